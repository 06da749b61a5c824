"""The queue worker: claims jobs from the Redis stream, runs them in the sandbox, stores results, acknowledges.

Delivery is at least once. A job is acknowledged and deleted in the same transaction that stores its
result, so a job is either done (result stored) or still pending. Pending jobs of a worker whose heartbeat
stopped are claimed by other workers, one job at a time each; any job pending longer than the visibility timeout (longer
than the longest job) is claimed too. Each claim counts a delivery; a job delivered before runs alone on
its worker, so a crash is charged to it only; past `max_deliveries` the job is not run again but
dead-lettered with an `infra_error` result. A job run twice gives two identical results; the
gateway keeps the first.

SIGTERM: stop claiming, let running jobs finish for up to `drain_s`, hand the rest back to the stream
(without counting that delivery), leave the group, exit.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sandbox_worker import judge
from sandbox_worker.executor import ItemResult, Limits, TestExecutor
from sandbox_worker.job_queue import Job, RedisClock, StreamFields, connect, describe_url, encode_result, ensure_group
from sandbox_worker.queue_keys import DATA_FIELD, GROUP, QueueKeys

log = logging.getLogger(__name__)
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
READ_BLOCK_MS = 500  # how long a claim waits for work; also how fast an idle slot notices SIGTERM
REDIS_RETRY_S = 0.5
PENDING_SCAN = 100  # pending entries inspected per reclaim pass
# A job's end, atomic: result to the gateway's reply list (if any), the job to the dead-letter stream (if
# so), then acknowledge and delete the entry and count the outcome. XACK may fail with NOGROUP after a Redis
# restart; pcall keeps the rest. KEYS: jobs, reply, dead, stats. ARGV: entry id, group, outcome, result,
# reply ttl, dead-letter data, dead-letter cap.
COMMIT_LUA = f"""
if ARGV[4] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', '{DATA_FIELD}', ARGV[6])
end
redis.pcall('XACK', KEYS[1], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
return 1
"""


@dataclass(frozen=True)
class WorkerConfig:
    redis_url: str
    prefix: str
    name: str
    concurrency: int
    heartbeat_s: float
    heartbeat_ttl_s: float
    visibility_timeout_s: float
    max_deliveries: int
    drain_s: float
    result_ttl_s: float
    dead_letter_max: int


def default_worker_name() -> str:
    """Unique per process (a restarted worker is a new consumer; the old one's jobs get reclaimed)."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Claim:
    entry_id: bytes
    job: Job
    deliveries: int  # this delivery included


class QueueWorker:
    def __init__(self, config: WorkerConfig, executor: TestExecutor, caps: Limits) -> None:
        self.config = config
        self.executor = executor
        self.caps = caps
        self.keys = QueueKeys(config.prefix)
        self.redis: aioredis.Redis = connect(config.redis_url, f"acecoder-worker:{config.name}")
        self.clock = RedisClock()
        self._commit_script = self.redis.register_script(COMMIT_LUA)
        self._stopping = asyncio.Event()
        self._in_flight: dict[bytes, Claim] = {}
        self._reclaimed: collections.deque[Claim] = collections.deque()
        self._jobs_done = 0
        self._redis_ok = True
        self._gate = asyncio.Condition()  # admits runs: many at once, or one suspect job alone
        self._running = 0
        self._solo = False

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("worker %s draining (up to %.0f s)", self.config.name, self.config.drain_s)
        self._stopping.set()

    async def run(self) -> None:
        await self._connect()
        consumers = [asyncio.create_task(self._consume(), name=f"consume-{n}") for n in range(self.config.concurrency)]
        background = [asyncio.create_task(self._heartbeats()), asyncio.create_task(self._reclaims())]
        log.info("worker %s claiming from %s (%s), concurrency %d", self.config.name, self.keys.jobs,
                 describe_url(self.config.redis_url), self.config.concurrency)
        await self._stopping.wait()
        background[1].cancel()
        _, unfinished = await asyncio.wait(consumers, timeout=self.config.drain_s)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        await self._hand_back([*self._in_flight.values(), *self._reclaimed])
        background[0].cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self._leave()
        await self.redis.aclose()
        log.info("worker %s stopped after %d jobs", self.config.name, self._jobs_done)

    async def _connect(self) -> None:
        """Waits for Redis (a worker may start first), then registers before it claims anything."""
        while True:
            try:
                await self.clock.sync(self.redis)
                await ensure_group(self.redis, self.keys)
                await self._beat()
                return
            except REDIS_ERRORS as exc:
                log.warning("Redis at %s unreachable (%s); retrying", describe_url(self.config.redis_url), exc)
                await asyncio.sleep(1)

    # -- claiming and running ------------------------------------------------------------------------------

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            async with self._gate:
                await self._gate.wait_for(lambda: not self._solo)
            claim = await self._next_claim()
            if claim is None:
                continue
            self._in_flight[claim.entry_id] = claim
            if self._stopping.is_set():
                return  # claimed as SIGTERM came: handed back by run()
            solo = claim.deliveries > 1
            await self._start_run(solo)
            try:
                await self._process(claim)
            finally:
                await self._end_run(solo)
            del self._in_flight[claim.entry_id]

    async def _start_run(self, solo: bool) -> None:
        """A job delivered before ended a worker (or shared one with a job that did) and runs alone, with no
        other job claimed meanwhile: if it kills this worker too, only it is charged the delivery, and an
        innocent job that shared a worker with a poison job is not dead-lettered with it."""
        async with self._gate:
            await self._gate.wait_for(lambda: not self._solo)
            if solo:
                self._solo = True
                await self._gate.wait_for(lambda: self._running == 0)
            self._running += 1

    async def _end_run(self, solo: bool) -> None:
        async with self._gate:
            self._running -= 1
            if solo:
                self._solo = False
            self._gate.notify_all()

    async def _next_claim(self) -> Claim | None:
        if self._reclaimed:
            return self._reclaimed.popleft()
        answer: Any
        try:
            answer = await self.redis.xreadgroup(GROUP, self.config.name, {self.keys.jobs: ">"}, count=1,
                                                 block=READ_BLOCK_MS)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await ensure_group(self.redis, self.keys)  # Redis restarted empty
            return None
        except REDIS_ERRORS as exc:
            await self._redis_down(exc)
            return None
        self._redis_up()
        if not answer:
            return None
        entry_id, fields = answer[0][1][0]
        return await self._claim_of(entry_id, fields, delivered=1)

    async def _claim_of(self, entry_id: bytes, fields: StreamFields, delivered: int) -> Claim | None:
        try:
            job = Job.decode(fields)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("dropping malformed job %s: %s", entry_id, exc)
            await self._commit(entry_id, None, "malformed", dead_letter=repr(fields).encode()[:1 << 20])
            return None
        return Claim(entry_id, job, job.prior_deliveries + delivered)

    async def _process(self, claim: Claim) -> None:
        job = claim.job
        now_ms = self.clock.now_ms()
        if now_ms >= job.deadline_ms:
            await self._commit(claim.entry_id, None, "expired")  # nobody waits for it any more
            return
        if claim.deliveries > self.config.max_deliveries:
            log.error("job %s was delivered %d times without a result; dead-lettering it", job.id, claim.deliveries)
            detail = (f"the job ended the worker running it {claim.deliveries - 1} times; it was dead-lettered "
                      "and not run again")
            result = ItemResult(None, judge.not_run("infra_error", len(job.tests), detail))
            raw = encode_result(job.id, result, (now_ms - job.enqueued_ms) / 1000, 0.0, self.config.name)
            await self._commit(claim.entry_id, (job, raw), "dead_lettered", dead_letter=job.encode_data())
            return
        started = time.monotonic()
        result = await self.executor.execute(job.response, job.tests, job.limits_capped(self.caps))
        raw = encode_result(job.id, result, (now_ms - job.enqueued_ms) / 1000, time.monotonic() - started,
                            self.config.name)
        await self._commit(claim.entry_id, (job, raw), "done")
        self._jobs_done += 1

    async def _commit(self, entry_id: bytes, reply: tuple[Job, bytes] | None, outcome: str,
                      dead_letter: bytes | None = None) -> None:
        """Stores the result, acknowledges and deletes the entry, atomically (one script). Retried while Redis
        is away, until the job's deadline: after it the gateway no longer waits (and re-queues lost jobs)."""
        give_up_ms = reply[0].deadline_ms if reply else self.clock.now_ms() + 10_000
        keys = [self.keys.jobs, reply[0].reply if reply else "", self.keys.dead, self.keys.stats]
        args: list[bytes | str | int] = [entry_id, GROUP, outcome, reply[1] if reply else b"",
                                         int(self.config.result_ttl_s), dead_letter or b"", self.config.dead_letter_max]
        while True:
            try:
                await self._commit_script(keys=keys, args=args)
                self._redis_up()
                return
            except REDIS_ERRORS as exc:
                await self._redis_down(exc)
                if self.clock.now_ms() > give_up_ms:
                    log.warning("dropping the result of entry %s: Redis away past its deadline", entry_id)
                    return

    async def _hand_back(self, claims: list[Claim]) -> None:
        """Puts unfinished jobs back as new entries; this delivery does not count towards dead-lettering."""
        for claim in claims:
            claim.job.prior_deliveries = claim.deliveries - 1
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(self.keys.jobs, claim.job.encode())
            pipe.xack(self.keys.jobs, GROUP, claim.entry_id)
            pipe.xdel(self.keys.jobs, claim.entry_id)
            pipe.hincrby(self.keys.stats, "handed_back", 1)
            try:
                await pipe.execute(raise_on_error=False)
            except REDIS_ERRORS as exc:  # stays pending under our name: reclaimed once our heartbeat is gone
                log.warning("could not hand back entry %s (%s)", claim.entry_id, exc)
        if claims:
            log.info("handed back %d unfinished jobs", len(claims))

    # -- liveness ------------------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            beats += 1
            try:
                if beats % 30 == 0:
                    await self.clock.sync(self.redis)
                await self._beat()
            except REDIS_ERRORS as exc:
                await self._redis_down(exc)

    async def _beat(self) -> None:
        """No zygote left means no job can run: stop beating, so probes fail and our jobs move elsewhere."""
        if self.executor.pool.live == 0:
            log.error("no sandbox zygote alive; withholding heartbeat")
            return
        now_ms = self.clock.now_ms()
        ttl_ms = int(self.config.heartbeat_ttl_s * 1000)
        record = {"name": self.config.name, "host": socket.gethostname(), "pid": os.getpid(),
                  "concurrency": self.config.concurrency, "busy": len(self._in_flight),
                  "zygotes": self.executor.pool.live, "jobs_done": self._jobs_done,
                  "draining": self._stopping.is_set(), "at_ms": now_ms}
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {self.config.name: now_ms})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms - 10 * ttl_ms)
        pipe.set(self.keys.worker(self.config.name), orjson.dumps(record), px=ttl_ms)
        await pipe.execute()

    async def _leave(self) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(self.keys.workers, self.config.name)
            pipe.delete(self.keys.worker(self.config.name))
            await pipe.execute()
            pending = await self.redis.xpending_range(self.keys.jobs, GROUP, "-", "+", 1,
                                                      consumername=self.config.name)
            if not pending:
                await self.redis.xgroup_delconsumer(self.keys.jobs, GROUP, self.config.name)
        except (*REDIS_ERRORS, ResponseError) as exc:
            log.warning("could not deregister cleanly (%s)", exc)

    # -- reclaiming ----------------------------------------------------------------------------------------

    async def _reclaims(self) -> None:
        busy = False
        while True:
            # Right after a reclaim, look again soon: a dead worker's jobs come back one at a time.
            await asyncio.sleep(0.05 if busy else self.config.heartbeat_s)
            busy = False
            try:
                busy = await self._reclaim_once()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
            except REDIS_ERRORS as exc:
                await self._redis_down(exc)

    async def _reclaim_once(self) -> bool:
        """Claims jobs of dead workers (no heartbeat) and jobs pending past the visibility timeout."""
        # One at a time, and only while no suspect job waits or runs here: a job claimed is charged a
        # delivery if this worker dies, even while it only waits for its turn.
        if self._reclaimed or self._solo:
            return True
        now_ms = self.clock.now_ms()
        members: Any = await self.redis.zrangebyscore(
            self.keys.workers, now_ms - int(self.config.heartbeat_ttl_s * 1000), "+inf")
        live = {m.decode() for m in members}
        visibility_ms = int(self.config.visibility_timeout_s * 1000)
        candidates = await self.redis.xpending_range(self.keys.jobs, GROUP, "-", "+", PENDING_SCAN,
                                                     idle=visibility_ms)
        for consumer in await self.redis.xinfo_consumers(self.keys.jobs, GROUP):
            raw_name = consumer["name"]
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            if name in live or name == self.config.name:
                continue
            if consumer["pending"]:
                candidates += await self.redis.xpending_range(self.keys.jobs, GROUP, "-", "+", PENDING_SCAN,
                                                              consumername=name)
            elif consumer["idle"] > 10 * self.config.heartbeat_ttl_s * 1000:
                await self.redis.xgroup_delconsumer(self.keys.jobs, GROUP, name)  # gone for good
        for entry in candidates:
            if await self._reclaim(entry, min(visibility_ms, 200)):
                return True
        return False

    async def _reclaim(self, entry: Mapping[str, Any], min_idle_ms: int) -> bool:
        # XCLAIM resets the idle time, so when several workers race for one entry only the first gets it.
        claimed: Any = await self.redis.xclaim(self.keys.jobs, GROUP, self.config.name, min_idle_ms,
                                          [entry["message_id"]])
        for entry_id, fields in claimed:
            if not fields:
                continue  # deleted meanwhile (withdrawn by its gateway)
            delivered = int(entry["times_delivered"]) + 1
            claim = await self._claim_of(entry_id, fields, delivered)
            if claim is None:
                continue
            await self.redis.hincrby(self.keys.stats, "reclaimed", 1)
            log.warning("reclaimed job %s from %s (delivery %d)", claim.job.id, entry["consumer"], claim.deliveries)
            self._reclaimed.append(claim)
            return True
        return False

    # -- Redis health --------------------------------------------------------------------------------------

    async def _redis_down(self, exc: BaseException) -> None:
        if self._redis_ok:
            log.error("Redis at %s unreachable (%s); retrying", describe_url(self.config.redis_url), exc)
        self._redis_ok = False
        await asyncio.sleep(REDIS_RETRY_S)

    def _redis_up(self) -> None:
        if not self._redis_ok:
            log.info("Redis is back")
            self._redis_ok = True
