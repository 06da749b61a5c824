"""The queue worker: claims jobs from the Redis stream, runs them in the sandbox, stores results, acknowledges.

Delivery is at least once. A job is acknowledged and deleted in the same script that stores its result, so a
job is either done (result stored) or still pending. A worker claims up to twice `concurrency` jobs ahead of
its slots and keeps every job it holds fresh (idle time reset each heartbeat), so only the jobs of a worker whose
heartbeat stopped, or that stayed untouched past the visibility timeout, are claimed by others. Each claim
counts a delivery; a job delivered before is claimed and run while nothing else is claimed or runs on that
worker, so a crash is charged to it alone; past `max_deliveries` it is not run again but dead-lettered with an
`infra_error` result. A job run twice gives two identical results; the gateway keeps the first.

SIGTERM: stop claiming, let running jobs finish for up to `drain_s`, hand the rest back (their entries are
moved to the never-live consumer `handed-back` with this delivery uncounted, so other workers take them at
once under the same entry id), leave the group, exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import os
import secrets
import socket
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from acecoder_reward.sandbox_worker import judge, log_context, queue_reclaim
from acecoder_reward.sandbox_worker.executor import ItemResult, Limits, TestExecutor
from acecoder_reward.sandbox_worker.job_queue import (
    Job,
    RedisClock,
    StreamFields,
    connect,
    describe_url,
    encode_result,
    ensure_group,
)
from acecoder_reward.sandbox_worker.queue_keys import DATA_FIELD, GROUP, HANDED_BACK, QueueKeys

log = logging.getLogger(__name__)
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
READ_BLOCK_MS = 500  # how long a claim waits for work; also how fast the fetcher notices SIGTERM
# Jobs claimed ahead, per slot. Under load a claim's round trip waits for the worker and Redis to get a CPU
# behind the programs, and can outlast a job: with one job ahead per slot, slots finished faster than claims
# came back and sat idle while the stream still held work. Each read still claims at most one job per slot,
# so idle workers split a small request between them instead of one taking it all.
CLAIM_AHEAD_PER_SLOT = 2
FETCH_STOP_SLACK_S = 5.0  # past BLOCK plus this, a claim read at shutdown is taken as wedged
SHUTDOWN_SLACK_S = 10.0  # stopping takes at most the drain time plus this
RETRY_S = 0.5
CANCEL_RETRY_S = 0.1  # at shutdown, a task cut off is cancelled again this often until it ends (see _end)
CANCEL_WAIT_S = 3.0  # a task cut off that is still running this long after is left behind
# The end of one or more jobs, each atomic: result to its gateway's reply list (if any), the job to the
# dead-letter stream (if so), then acknowledge and delete the entry and count the outcome. XACK fails with
# NOGROUP after a Redis restart; pcall keeps the rest. KEYS: jobs, dead, stats, then one reply list per job
# ('' where it has no result). ARGV: group, reply ttl (ms), dead-letter cap, then per job: entry id,
# outcome, result, dead-letter data.
COMMIT_LUA = f"""
for i = 0, (#ARGV - 3) / 4 - 1 do
  local at = 4 + 4 * i
  if ARGV[at + 2] ~= '' then
    redis.call('RPUSH', KEYS[4 + i], ARGV[at + 2])
    redis.call('PEXPIRE', KEYS[4 + i], ARGV[2])
  end
  if ARGV[at + 3] ~= '' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', '{DATA_FIELD}', ARGV[at + 3])
  end
  redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[at])
  redis.call('XDEL', KEYS[1], ARGV[at])
  redis.call('HINCRBY', KEYS[3], ARGV[at + 1], 1)
end
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
    """Unique per process start: in a container the pid is often 1, and a restarted worker must not take
    over the dead one's name (its pending jobs would look owned by a live worker)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class Claim:
    entry_id: bytes
    job: Job
    deliveries: int  # this one included


@dataclass(frozen=True)
class Ending:
    """A job's end, to be stored: its result for the gateway (if any), its outcome, its dead letter (if any)."""

    entry_id: bytes
    reply: str  # the gateway's reply list; '' without a result
    result: bytes  # b'' without one
    outcome: str
    dead_letter: bytes  # b'' unless dead-lettered
    give_up_ms: int  # Redis clock: past it, storing is abandoned (the gateway no longer waits)


class QueueWorker:
    def __init__(self, config: WorkerConfig, executor: TestExecutor, caps: Limits) -> None:
        self.config = config
        self.executor = executor
        self.caps = caps
        self.keys = QueueKeys(config.prefix)
        self.redis: aioredis.Redis = connect(config.redis_url, f"acecoder-worker:{config.name}")
        self.clock = RedisClock()
        self._commit_script = self.redis.register_script(COMMIT_LUA)
        self._refresh_script = self.redis.register_script(queue_reclaim.REFRESH_LUA)
        self._stopping = asyncio.Event()
        self._claimed: dict[bytes, Claim] = {}  # result not yet stored: kept fresh, handed back on shutdown
        self._ready: collections.deque[Claim] = collections.deque()  # claimed ahead, waiting for a slot
        self._ready_max = CLAIM_AHEAD_PER_SLOT * config.concurrency
        self._running = 0
        self._reading = False  # the fetcher waits in XREADGROUP
        self._pause = False  # claim nothing new: a re-delivered job waits to run alone
        self._alone = False  # a re-delivered job runs: start nothing else
        self._changed = asyncio.Condition()
        self._to_store: list[tuple[Claim, Ending]] = []
        self._store_task: asyncio.Task[None] | None = None  # stores `_to_store` until it is empty
        self._storing = 0  # results waiting or being stored (counted so waiters can be woken)
        self._jobs_done = 0
        self._redis_ok = True
        self._settled_at = 0.0  # monotonic time from which dead-looking workers are believed dead
        self._drain_until = float("inf")  # set on SIGTERM: result storing gives up a little after it
        self._reserved: set[bytes] = set()  # a suspect job held (not yet delivered) while this worker drains
        self._beating = True  # cleared at shutdown, before the worker leaves the group

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("worker %s draining (up to %.0f s)", self.config.name, self.config.drain_s)
        self._stopping.set()

    async def run(self) -> None:
        if not await self._connect():
            return
        runners = [asyncio.create_task(self._slot()) for _ in range(self.config.concurrency)]
        runners.append(asyncio.create_task(self._reclaims()))  # it runs re-delivered jobs itself
        fetcher = asyncio.create_task(self._fetch())
        heartbeats = asyncio.create_task(self._heartbeats())
        log.info("worker %s claiming from %s (%s), concurrency %d", self.config.name, self.keys.jobs,
                 describe_url(self.config.redis_url), self.config.concurrency)
        await self._stopping.wait()
        try:
            # Every step below is bounded on its own; this bound is the backstop that keeps a worker inside
            # its pod's grace period whatever hangs (jobs left claimed are reclaimed by other workers).
            async with asyncio.timeout(self.config.drain_s + SHUTDOWN_SLACK_S):
                await self._drain(fetcher, runners, heartbeats)
        except TimeoutError:
            log.error("worker %s did not finish stopping within %.0f s; exiting, its claimed jobs will be "
                      "reclaimed; its tasks:\n%s", self.config.name, self.config.drain_s + SHUTDOWN_SLACK_S,
                      _task_stacks(asyncio.all_tasks() - {asyncio.current_task()}))
        log.info("worker %s stopped after %d jobs", self.config.name, self._jobs_done)

    async def _drain(self, fetcher: asyncio.Task[None], runners: list[asyncio.Task[None]],
                     heartbeats: asyncio.Task[None]) -> None:
        """Every phase is bounded, and none waits on a task it cancelled just once (see `_end`)."""
        self._drain_until = time.monotonic() + self.config.drain_s
        with _phase("wake the loops"):
            await self._notify()
        # The loops end by themselves once they see `_stopping` (a claim read within its BLOCK), so no Redis
        # call of theirs is cut off. Jobs claimed ahead go back at once, so other workers run them meanwhile.
        with _phase("stop the claim loop"):
            await _end([fetcher], READ_BLOCK_MS / 1000 + FETCH_STOP_SLACK_S, "claim loop")
        ahead = list(self._ready)
        self._ready.clear()
        with _phase(f"hand back {len(ahead)} jobs claimed ahead"):
            await self._hand_back(ahead)
        # Jobs still running at the drain time are cut off, and handed back below with the rest.
        with _phase(f"finish {self._running} running jobs"):
            await _end(runners, self._drain_until - time.monotonic(), "job runners")
        with _phase(f"store {self._storing} results"):
            stores = [self._store_task] if self._store_task is not None else []
            await _end(stores, self._drain_until - time.monotonic() + RETRY_S, "result stores")
        with _phase("stop the heartbeat"):
            self._beating = False
            await _end([heartbeats], 0, "heartbeat")
        with _phase(f"hand back {len(self._claimed)} unfinished jobs"):
            await self._hand_back(list(self._claimed.values()))
        with _phase("leave the group"):
            await self._leave()
        with _phase("close the Redis connections"):
            await self.redis.aclose()

    async def _connect(self) -> bool:
        """Waits for Redis (a worker may start first), then registers before it claims anything."""
        while not self._stopping.is_set():
            try:
                await self.clock.sync(self.redis)
                await ensure_group(self.redis, self.keys)
                await self._beat()
                self._settled_at = time.monotonic() + self.config.heartbeat_ttl_s
                return True
            except (*REDIS_ERRORS, ResponseError) as exc:
                log.warning("Redis at %s not usable (%s); retrying", describe_url(self.config.redis_url), exc)
                await asyncio.sleep(1)
        return False

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- claiming ------------------------------------------------------------------------------------------

    async def _fetch(self) -> None:
        """Keeps up to `_ready_max` jobs claimed ahead of the slots, so a slot that finishes a job starts the
        next at once instead of waiting on Redis."""
        while not self._stopping.is_set():
            if self.executor.pool.live == 0:  # nothing could run them: leave them to other workers
                await asyncio.sleep(1)
                continue
            async with self._changed:
                await self._changed.wait_for(lambda: self._stopping.is_set() or (
                    not self._pause and len(self._ready) < self._ready_max))
            if self._stopping.is_set():
                return
            self._reading = True
            try:
                claims = await self._read(min(self.config.concurrency, self._ready_max - len(self._ready)))
                self._ready.extend(claims)
            except Exception:
                log.exception("claiming jobs failed; retrying")
                await asyncio.sleep(RETRY_S)
            finally:
                self._reading = False
                await self._notify()
            await asyncio.sleep(0)  # the slots woken above start their jobs before we ask Redis for more

    async def _read(self, count: int) -> list[Claim]:
        answer: Any
        try:
            answer = await self.redis.xreadgroup(GROUP, self.config.name, {self.keys.jobs: ">"}, count=count,
                                                 block=READ_BLOCK_MS)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await ensure_group(self.redis, self.keys)  # Redis restarted empty
            return []
        except REDIS_ERRORS as exc:
            await self._redis_down(exc)
            return []
        self._redis_up()
        claims = []
        for entry_id, fields in answer[0][1] if answer else []:
            claim = await self._claim_of(entry_id, fields, deliveries=1)
            if claim is not None:
                claims.append(claim)
        return claims

    async def _claim_of(self, entry_id: bytes, fields: StreamFields, deliveries: int) -> Claim | None:
        try:
            job = Job.decode(fields)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("dropping malformed job %s: %s", entry_id, exc)
            await self._commit([Ending(entry_id, "", b"", "malformed", repr(fields).encode()[:1 << 20],
                                       self.clock.now_ms() + 10_000)])
            return None
        claim = Claim(entry_id, job, deliveries)
        self._claimed[entry_id] = claim
        return claim

    # -- running -------------------------------------------------------------------------------------------

    async def _slot(self) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self._stopping.is_set() or (bool(self._ready) and not self._alone))
                if self._stopping.is_set():
                    return  # jobs claimed ahead are handed back
                claim = self._ready.popleft()
                self._running += 1
                self._changed.notify_all()
            try:
                await self._process_or_hand_back(claim)
            finally:
                self._running -= 1
                await self._notify()

    async def _process_or_hand_back(self, claim: Claim) -> None:
        """A failure of ours (not the candidate's: those are results) must not leave the job held forever."""
        try:
            await self._process(claim)
        except Exception:
            log.exception("job %s could not be processed; handing it back", claim.job.id)
            await self._hand_back([claim])

    async def _process(self, claim: Claim) -> None:
        job = claim.job
        log_context.request_id.set(job.request_id)  # this task's log lines belong to that request
        now_ms = self.clock.now_ms()
        queued_s = (now_ms - job.enqueued_ms) / 1000
        if now_ms >= job.deadline_ms:
            self._commit_soon(claim, None, "expired")  # nobody waits for it any more
            return
        if claim.deliveries > self.config.max_deliveries:
            log.error("job %s was delivered %d times without a result; dead-lettering it", job.id, claim.deliveries)
            detail = (f"the job ended the worker running it {claim.deliveries - 1} times; it was dead-lettered "
                      "and not run again")
            result = ItemResult(None, judge.not_run("infra_error", len(job.tests), detail))
            raw = encode_result(job.id, result, queued_s, 0.0, self.config.name)
            self._commit_soon(claim, raw, "dead_lettered", dead_letter=job.encode_data())
            return
        started = time.monotonic()
        try:
            result = await self.executor.execute(job.response, job.tests, job.limits_capped(self.caps),
                                                 job.stop_on_first_failure)
        except Exception as exc:  # a bug of ours, not the candidate's: say so rather than hold the job
            log.exception("job %s failed in the worker", job.id)
            result = ItemResult(None, judge.not_run("infra_error", len(job.tests), f"worker error: {exc!r}"))
        run_s = time.monotonic() - started
        log.debug("job %s: %s, %d/%d tests passed, %.3f s", job.id, result.tests.status, result.tests.passed,
                  result.tests.total, run_s)
        raw = encode_result(job.id, result, queued_s, run_s, self.config.name, self.executor.profile)
        self._commit_soon(claim, raw, "done")

    def _commit_soon(self, claim: Claim, raw: bytes | None, outcome: str, dead_letter: bytes | None = None) -> None:
        """Stores the result in the background: the slot takes its next job meanwhile. Results that end while
        a store is on its way go together in the next one: one round trip for all of them."""
        reply = claim.job.reply if raw is not None else ""
        self._to_store.append((claim, Ending(claim.entry_id, reply, raw or b"", outcome, dead_letter or b"",
                                             claim.job.deadline_ms)))
        self._storing += 1
        if self._store_task is None or self._store_task.done():
            self._store_task = asyncio.create_task(self._store_all())

    async def _store_all(self) -> None:
        while self._to_store:
            batch, self._to_store = self._to_store, []
            try:
                await self._commit([ending for _, ending in batch])
                for claim, ending in batch:
                    self._claimed.pop(claim.entry_id, None)
                    self._jobs_done += ending.outcome == "done"
            finally:
                self._storing -= len(batch)
                await self._notify()

    async def _commit(self, endings: list[Ending]) -> None:
        """Retried while Redis is away, each result until its job's deadline: after it the gateway no longer
        waits (and it queues lost jobs again itself)."""
        while endings:
            keys = [self.keys.jobs, self.keys.dead, self.keys.stats, *(e.reply for e in endings)]
            args: list[bytes | str | int] = [GROUP, int(self.config.result_ttl_s * 1000), self.config.dead_letter_max]
            for e in endings:
                args += [e.entry_id, e.outcome, e.result, e.dead_letter]
            try:
                await self._commit_script(keys=keys, args=args)
                self._redis_up()
                return
            except (*REDIS_ERRORS, ResponseError) as exc:
                await self._redis_down(exc)
                now_ms, stopped = self.clock.now_ms(), time.monotonic() > self._drain_until + RETRY_S
                for e in endings:
                    if stopped or now_ms > e.give_up_ms:
                        log.warning("dropping the result of entry %s: Redis unusable past its deadline", e.entry_id)
                endings = [] if stopped else [e for e in endings if now_ms <= e.give_up_ms]

    async def _hand_back(self, claims: list[Claim]) -> None:
        """Unfinished jobs go to the never-live consumer `handed-back`, idle and with this delivery
        uncounted, so the next reclaim pass of any worker takes them; their entry ids do not change."""
        for claim in claims:
            self._claimed.pop(claim.entry_id, None)  # the heartbeat must not take it back
            try:
                await self.redis.xclaim(self.keys.jobs, GROUP, HANDED_BACK, 0, [claim.entry_id],
                                        idle=queue_reclaim.HANDED_BACK_IDLE_MS, retrycount=claim.deliveries - 1,
                                        justid=True)
                await self.redis.hincrby(self.keys.stats, "handed_back", 1)
            except (*REDIS_ERRORS, ResponseError) as exc:  # stays ours: reclaimed once our heartbeat is gone
                log.warning("could not hand back entry %s (%s)", claim.entry_id, exc)
        if claims:
            log.info("handed back %d unfinished jobs", len(claims))

    # -- liveness ------------------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """Ends when `_beating` is cleared, not only when cancelled: a cancel can be lost (see `_end`), and a
        heartbeat after we left the group would register us again."""
        beats = 0
        while self._beating:
            await asyncio.sleep(self.config.heartbeat_s)
            if not self._beating:
                return
            beats += 1
            try:
                if beats % 30 == 0:
                    await self.clock.sync(self.redis)
                await self._beat()
                self._redis_up()
            except Exception as exc:
                await self._redis_down(exc)

    async def _beat(self) -> None:
        """Registers us as live and keeps every job we hold fresh (see REFRESH_LUA), so a long wait plus a long
        run never passes the visibility timeout. No zygote
        left means no job can run: stop beating, so probes fail and our jobs move elsewhere."""
        if self.executor.pool.live == 0:
            log.error("no sandbox zygote alive; withholding heartbeat")
            return
        now_ms = self.clock.now_ms()
        ttl_ms = int(self.config.heartbeat_ttl_s * 1000)
        record = {"name": self.config.name, "host": socket.gethostname(), "pid": os.getpid(),
                  "concurrency": self.config.concurrency, "running": self._running, "claimed": len(self._claimed),
                  "zygotes": self.executor.pool.live, "jobs_done": self._jobs_done,
                  "draining": self._stopping.is_set(), "at_ms": now_ms, "profile": self.executor.profile}
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {self.config.name: now_ms})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms - 10 * ttl_ms)
        pipe.set(self.keys.worker(self.config.name), orjson.dumps(record), px=ttl_ms)
        await pipe.execute(raise_on_error=False)
        held = [*self._claimed, *self._reserved]
        if held:
            gone: Any = await self._refresh_script(keys=[self.keys.jobs], args=[GROUP, self.config.name, *held])
            self._forget_withdrawn(set(gone))

    def _forget_withdrawn(self, gone: set[bytes]) -> None:
        """Jobs claimed ahead whose entries vanished (their gateway withdrew them: it timed out, or its caller
        went away) are dropped unrun."""
        for claim in [c for c in self._ready if c.entry_id in gone]:
            self._ready.remove(claim)  # in place: other coroutines hold this deque
            self._claimed.pop(claim.entry_id, None)

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
        while not self._stopping.is_set():
            await asyncio.sleep(self.config.heartbeat_s)
            if time.monotonic() < self._settled_at:
                continue  # just started, or Redis just came back: live workers may not have beaten yet
            try:
                while not self._stopping.is_set() and await self._reclaim_one():
                    pass
            except Exception as exc:
                await self._redis_down(exc)

    async def _reclaim_one(self) -> bool:
        if self.executor.pool.live == 0:
            return False
        entries = await queue_reclaim.reclaimable(self.redis, self.keys, self.config.name, self.clock.now_ms(),
                                                  self.config.heartbeat_ttl_s, self.config.visibility_timeout_s)
        for entry in entries:
            if int(entry["times_delivered"]) > 0 or len(self._ready) >= self._ready_max:
                continue
            # Handed back by a draining worker: an ordinary job, claimed ahead like any other.
            taken = await queue_reclaim.claim(self.redis, self.keys, self.config.name, entry)
            if taken is not None and (claim := await self._claim_of(*taken)) is not None:
                self._ready.append(claim)
                await self._notify()
                return True
        for entry in entries:
            if int(entry["times_delivered"]) > 0 and await queue_reclaim.reserve(self.redis, self.keys,
                                                                                  self.config.name, entry):
                await self._run_alone(entry["message_id"], str(entry["consumer"]))
                return True
        return False

    async def _run_alone(self, entry_id: bytes, owner: str) -> None:
        """A job delivered before ended a worker (or shared one with a job that did). Reserved first (held
        without a delivery counted, so other workers leave it alone), it is delivered and run once nothing
        else is claimed, runs or is being stored here: if it kills this worker too, only it is charged the
        delivery, and an innocent job that shared a worker with a poison job is not dead-lettered with it."""
        self._reserved.add(entry_id)
        try:
            async with self._changed:
                self._pause = True
                self._changed.notify_all()
                await self._changed.wait_for(lambda: self._stopping.is_set() or (
                    not self._ready and not self._running and not self._reading and not self._storing))
                self._alone = True
            if self._stopping.is_set():
                return  # still reserved under our name, undelivered: handed back below
            taken = await queue_reclaim.deliver(self.redis, self.keys, self.config.name, entry_id)
            if taken is None or (claim := await self._claim_of(*taken)) is None:
                return
            self._reserved.discard(entry_id)
            log.warning("reclaimed job %s from %s (delivery %d)", claim.job.id, owner, claim.deliveries)
            with contextlib.suppress(*REDIS_ERRORS, ResponseError):
                await self.redis.hincrby(self.keys.stats, "reclaimed", 1)
            self._running += 1
            try:
                await self._process_or_hand_back(claim)
            finally:
                self._running -= 1
        finally:
            if entry_id in self._reserved:
                self._reserved.discard(entry_id)
                with contextlib.suppress(*REDIS_ERRORS, ResponseError):  # else: ours until our heartbeat stops
                    await queue_reclaim.release(self.redis, self.keys, entry_id)
            self._pause = self._alone = False
            await self._notify()

    # -- Redis health --------------------------------------------------------------------------------------

    async def _redis_down(self, exc: BaseException) -> None:
        if self._redis_ok:
            log.error("Redis at %s unusable (%s: %s); retrying", describe_url(self.config.redis_url),
                      type(exc).__name__, exc)
        self._redis_ok = False
        self._settled_at = time.monotonic() + self.config.heartbeat_ttl_s + RETRY_S
        await asyncio.sleep(RETRY_S)

    def _redis_up(self) -> None:
        if not self._redis_ok:
            log.info("Redis is back")
            self._redis_ok = True


async def _end(tasks: Collection[asyncio.Task[Any]], wait_s: float, what: str) -> None:
    """Gives `tasks` up to `wait_s` to end by themselves, then cancels the rest, again and again until they end.
    One cancel is not enough: on Python 3.11 a cancel that lands while redis-py writes a command is lost (it
    writes through asyncio.wait_for, which returns normally when its inner write is already done, CPython
    gh-86296), and the task carries on as if never cancelled. A task still running CANCEL_WAIT_S after its
    first cancel is left behind and named in the log, so the stop stays bounded."""
    pending = {task for task in tasks if not task.done()}
    if pending and wait_s > 0:
        _, pending = await asyncio.wait(pending, timeout=wait_s)
    if pending:  # cutting off loops that were asked to stop is routine; anything after a wait is news
        log.log(logging.INFO if wait_s > 0 else logging.DEBUG, "cutting off %d %s", len(pending), what)
    give_up = time.monotonic() + CANCEL_WAIT_S
    while pending and time.monotonic() < give_up:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_RETRY_S)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("%s task %s failed", what, task.get_name(), exc_info=task.exception())
    if pending:
        log.error("%d %s still running %.0f s after being cancelled; leaving them:\n%s", len(pending), what,
                  CANCEL_WAIT_S, _task_stacks(pending))


def _task_stacks(tasks: Iterable[asyncio.Task[Any]]) -> str:
    out = io.StringIO()
    for task in tasks:
        task.print_stack(file=out)
    return out.getvalue()


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    """Logs a drain phase's start and end, so a stop that hangs names the phase it hangs in."""
    started = time.monotonic()
    log.debug("drain: %s", name)
    yield
    log.debug("drain: %s: done in %.2f s", name, time.monotonic() - started)
