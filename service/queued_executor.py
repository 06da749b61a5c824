"""The gateway's side of the Redis queue: enqueue a request's items as jobs, await their results.

The gateway owns every job it accepted until the job's result arrives or the request's deadline passes.
Results come back on a reply list of this gateway instance and are matched by job id, so a job run twice
(at-least-once delivery) still yields one result. If Redis restarts and loses the stream, an audit finds
the jobs whose entries are gone without a result and queues them again: nothing accepted is lost while
its request still waits. A request that times out withdraws its unfinished jobs, so no worker runs them
for nobody.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from acecoder_reward.sandbox_worker import log_context
from acecoder_reward.sandbox_worker.executor import ItemResult, Limits, OnResult
from acecoder_reward.sandbox_worker.job_queue import (
    Job,
    QueuedResult,
    RedisClock,
    connect,
    decode_result,
    describe_url,
    ensure_group,
)
from acecoder_reward.sandbox_worker.queue_keys import DATA_FIELD, GROUP, QueueKeys
from acecoder_reward.service.errors import DeadlineExceeded, Overloaded, Unavailable
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.step_batch import StepBatcher

log = logging.getLogger(__name__)
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# The job lists of the requests of one event-loop step (StepBatcher), in one call. KEYS[1]: the job stream;
# ARGV: per list, the most jobs the stream may hold after it, its length, its jobs. Each list is added whole
# and only if it fits; returns per list its new entry ids, or the stream's length when it did not fit.
ENQUEUE_LUA = f"""
local depth = redis.call('XLEN', KEYS[1])
local out = {{}}
local at = 1
while at <= #ARGV do
  local bound, n = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  at = at + 1
  if depth + n > bound then
    out[#out + 1] = depth
  else
    local ids = {{}}
    for i = 1, n do ids[i] = redis.call('XADD', KEYS[1], '*', '{DATA_FIELD}', ARGV[at + i]) end
    depth = depth + n
    out[#out + 1] = ids
  end
  at = at + n + 1
end
return out
"""
POLL_S = 1.0  # metrics, Redis health and worker count refresh
REPLY_BATCH = 512


@dataclass(frozen=True)
class QueueConfig:
    redis_url: str
    prefix: str
    max_depth: int
    request_timeout_s: float
    heartbeat_ttl_s: float
    audit_interval_s: float


@dataclass
class _Request:
    """One request's items: the last result to arrive wakes the request (one wake-up, not one per item)."""

    remaining: int
    done: asyncio.Future[None]
    on_result: OnResult | None = None  # told of each item as its result arrives
    gone: bool = False  # ended with items unfinished: jobs still being added are withdrawn once their ids come


@dataclass
class _Waiting:
    job: Job
    request: _Request
    index: int  # in its request
    result: QueuedResult | None = None
    started: float = field(default_factory=time.monotonic)
    entry_id: bytes | None = None


class QueuedExecutor:
    def __init__(self, config: QueueConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.keys = QueueKeys(config.prefix)
        self.gateway_id = secrets.token_hex(8)
        self.redis: aioredis.Redis = connect(config.redis_url, f"acecoder-gateway:{self.gateway_id}")
        self.clock = RedisClock()
        self._enqueue_script = self.redis.register_script(ENQUEUE_LUA)
        self._enqueues: StepBatcher[tuple[int, list[_Waiting]], Any] = StepBatcher(self._enqueue_now)
        self.redis_ok = False
        self.live_workers = 0
        self._profile: str | None = None  # the live workers' common run profile; None while they differ
        self.added_latency_s: collections.deque[float] = collections.deque(maxlen=100_000)  # for benchmarks
        self._redis_error = "not connected yet"
        self._run_id: str | None = None
        self._last_audit = time.monotonic()
        self._waiting: dict[str, _Waiting] = {}
        self._seq = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def start(self) -> None:
        """Starts even while Redis is away (requests get 503 until it answers)."""
        await self._poll()
        self._tasks = [asyncio.create_task(self._read_replies()), asyncio.create_task(self._watch())]
        log.info("queue mode: %s, stream %s, gateway %s", describe_url(self.config.redis_url), self.keys.jobs,
                 self.gateway_id)

    async def close(self) -> None:
        # The loops end on their own within a second: cancelling a redis-py blocking read can wedge it.
        self._closing = True
        _, stuck = await asyncio.wait(self._tasks, timeout=3)
        for task in stuck:
            task.cancel()
        await self._enqueues.close()
        await self.redis.aclose()

    @property
    def profile(self) -> str | None:
        """The run profile every live worker reported (read each poll); None while they differ (a rolling
        upgrade, workers configured apart) or report none: the test-result cache then stands aside."""
        return self._profile

    def health(self) -> tuple[bool, dict[str, object]]:
        body: dict[str, object] = {"mode": "queue", "redis": "ok" if self.redis_ok else "unreachable",
                                   "workers": self.live_workers}
        if not self.redis_ok:
            body["error"] = self._redis_error
        return self.redis_ok, body

    # -- requests ------------------------------------------------------------------------------------------

    async def execute_many(self, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                           stop_on_first_failure: Sequence[bool] | None = None,
                           on_result: OnResult | None = None) -> list[ItemResult]:
        self._check_ready()
        stops = stop_on_first_failure or [False] * len(items)
        now_ms = self.clock.now_ms()
        timeout_s = self.config.request_timeout_s
        request = _Request(len(items), asyncio.get_running_loop().create_future(), on_result)
        waits = [_Waiting(Job(f"{self.gateway_id}:{next(self._seq)}", self.keys.reply(self.gateway_id),
                              now_ms + int(timeout_s * 1000), now_ms, response, tests, limits.__dict__,
                              log_context.request_id.get(), stop), request, k)
                 for k, ((response, tests), stop) in enumerate(zip(items, stops, strict=True))]
        for w in waits:
            self._waiting[w.job.id] = w
        try:
            try:
                await self._enqueue(waits, self.config.max_depth)
            except (*REDIS_ERRORS, ResponseError) as exc:  # ResponseError: e.g. OOM, or READONLY after a failover
                raise self._unavailable(exc) from exc
            try:
                async with asyncio.timeout(timeout_s):
                    await request.done
            except TimeoutError as exc:
                raise DeadlineExceeded(f"{request.remaining} of {len(waits)} items did not finish within "
                                       f"{timeout_s:g} s (ACECODER_QUEUE_REQUEST_TIMEOUT_S); their jobs were "
                                       "withdrawn") from exc
        finally:
            unfinished = [w for w in waits if w.result is None]
            for w in waits:
                self._waiting.pop(w.job.id, None)
            if unfinished:  # timed out, or the caller went away: no worker should run these for nobody
                request.gone = True  # jobs whose enqueue is still out are withdrawn when it answers
                await asyncio.shield(self._withdraw(unfinished))
        return [w.result.item for w in waits if w.result is not None]

    def _check_ready(self) -> None:
        if not self.redis_ok:
            raise Unavailable(f"Redis at {describe_url(self.config.redis_url)} is unreachable ({self._redis_error}); "
                              "retry later")
        if self.live_workers == 0:
            raise Unavailable(f"no sandbox worker is alive (none sent a heartbeat in the last "
                              f"{self.config.heartbeat_ttl_s:g} s); start `acecoder-reward worker`")

    def _unavailable(self, exc: BaseException) -> Unavailable:
        self._mark_down(exc)
        return Unavailable(f"Redis at {describe_url(self.config.redis_url)} is unreachable ({self._redis_error}); "
                           "retry later")

    async def _enqueue(self, waits: list[_Waiting], max_depth: int) -> None:
        """Adds the jobs, and only if the stream stays within `max_depth` (checked and added atomically, so
        several gateways together still respect the bound), in one round trip with the other requests' jobs of
        this loop step."""
        added = (await self._enqueues([(max_depth, waits)]))[0]
        if isinstance(added, int):
            self.metrics.rejected.labels("queue_full").inc()
            raise Overloaded(f"the job queue holds {added} jobs (at most {max_depth}); retry later")
        self.metrics.jobs_enqueued.inc(len(waits))

    async def _enqueue_now(self, job_lists: list[tuple[int, list[_Waiting]]]) -> list[Any]:
        """One call for the job lists of a step; sets each added job's entry id, and withdraws at once the jobs
        of a request that went away while the call was out (nothing else knows their ids)."""
        args: list[Any] = []
        for max_depth, waits in job_lists:
            args += (max_depth, len(waits), *(w.job.encode_data() for w in waits))
        answers = list(await self._enqueue_script(keys=[self.keys.jobs], args=args))
        orphans = []
        for (_, waits), added in zip(job_lists, answers, strict=True):
            if isinstance(added, int):
                continue
            for w, entry_id in zip(waits, added, strict=True):
                w.entry_id = entry_id
                if w.request.gone and w.result is None:
                    orphans.append(w)
        if orphans:
            await self._withdraw(orphans)
        return answers

    async def _withdraw(self, waits: list[_Waiting]) -> None:
        """Deletes entries not yet done. A claimed one is deleted too; its worker's result is then ignored."""
        ids = [w.entry_id for w in waits if w.entry_id is not None]
        if not ids:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.keys.jobs, GROUP, *ids)
            pipe.xdel(self.keys.jobs, *ids)
            pipe.hincrby(self.keys.stats, "withdrawn", len(ids))
            await pipe.execute(raise_on_error=False)
        except REDIS_ERRORS as exc:  # workers skip them anyway once their deadline has passed
            log.warning("could not withdraw %d jobs (%s)", len(ids), exc)

    # -- results -------------------------------------------------------------------------------------------

    async def _read_replies(self) -> None:
        key = self.keys.reply(self.gateway_id)
        while not self._closing:
            try:
                # Up to REPLY_BATCH results per round trip (BLMPOP, Redis >= 7).
                popped: Any = await self.redis.blmpop(1, 1, key, direction="LEFT", count=REPLY_BATCH)
                self._mark_up()  # Redis answers; the poll notices a restart by its run_id and audits
                for raw in popped[1] if popped else []:
                    self._deliver(raw)
                if popped:
                    await asyncio.sleep(0)  # the requests just completed answer before we block on Redis again
            except Exception as exc:  # whatever Redis answers, this loop must live on
                self._mark_down(exc)
                await asyncio.sleep(0.5)

    def _deliver(self, raw: bytes | str | int) -> None:
        try:
            result = decode_result(raw)  # type: ignore[arg-type]  # redis-py's union; replies are bytes
        except (KeyError, TypeError, ValueError) as exc:
            log.error("dropping a malformed result (%s)", exc)
            return
        waiting = self._waiting.get(result.job_id)
        if waiting is None or waiting.result is not None:
            self.metrics.duplicate_results.inc()  # a job run twice, or a result after its request ended
            return
        waiting.result = result
        request = waiting.request
        request.remaining -= 1
        if request.on_result is not None and not request.done.done():
            try:
                request.on_result(waiting.index, result.item)
            except Exception:  # the caller's hook must never stop the reply loop
                log.exception("on_result failed for job %s", result.job_id)
        if request.remaining == 0 and not request.done.done():  # done already: the caller went away
            request.done.set_result(None)
        added = max(0.0, time.monotonic() - waiting.started - result.run_s)
        self.added_latency_s.append(added)
        self.metrics.queue_wait.observe(result.queued_s)
        self.metrics.job_run.observe(result.run_s)
        self.metrics.queue_added.observe(added)

    # -- Redis health, metrics and the audit ---------------------------------------------------------------

    async def _watch(self) -> None:
        while not self._closing:
            await asyncio.sleep(POLL_S)
            try:
                await self._poll()
            except Exception as exc:  # e.g. NOGROUP right after a restart, READONLY after a failover
                log.warning("queue poll failed: %s: %s", type(exc).__name__, exc)

    async def _poll(self) -> None:
        was_ok = self.redis_ok
        try:
            info = await self.redis.info("server")
            await self.clock.sync(self.redis)
            restarted = self._run_id is not None and info.get("run_id") != self._run_id
            self._run_id = info.get("run_id")
            if restarted or not was_ok:
                await ensure_group(self.redis, self.keys)
            await self._refresh_metrics()
            self._mark_up()
            if restarted or (self._waiting and time.monotonic() - self._last_audit > self.config.audit_interval_s):
                await self._audit(restarted)
        except REDIS_ERRORS as exc:
            self._mark_down(exc)

    async def _refresh_metrics(self) -> None:
        now_ms = self.clock.now_ms()
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.keys.jobs)
        pipe.xpending(self.keys.jobs, GROUP)
        pipe.zrangebyscore(self.keys.workers, now_ms - int(self.config.heartbeat_ttl_s * 1000), "+inf")
        pipe.hgetall(self.keys.stats)
        depth, pending, live, stats = await pipe.execute(raise_on_error=False)
        names = live if isinstance(live, list) else []
        self.live_workers = len(names)
        await self._read_profiles(names)
        m = self.metrics
        if isinstance(depth, int):
            m.queue_depth.set(depth)
        if isinstance(pending, dict):
            m.queue_pending.set(pending.get("pending", 0))
        m.live_workers.set(self.live_workers)
        if isinstance(stats, dict):
            for name, value in stats.items():
                key = name.decode() if isinstance(name, bytes) else str(name)
                m.queue_events.labels(key).set(int(value))

    async def _read_profiles(self, names: list[Any]) -> None:
        records = await self.redis.mget([self.keys.worker(n.decode() if isinstance(n, bytes) else str(n))
                                         for n in names]) if names else []
        profiles = set()
        for record in records:
            try:
                profiles.add(orjson.loads(record).get("profile") if record else None)
            except (orjson.JSONDecodeError, AttributeError):
                profiles.add(None)
        self._profile = profiles.pop() if len(profiles) == 1 else None

    async def _audit(self, restarted: bool) -> None:
        """Queues again the jobs whose entries vanished without a result (a Redis restart without
        persistence, an eviction). A worker deletes an entry in the same transaction that stores its
        result, so a missing entry with no result means the job is lost, or its result is on the way."""
        self._last_audit = time.monotonic()
        waits = [w for w in self._waiting.values() if w.result is None and w.entry_id is not None]
        if not waits:
            return
        pipe = self.redis.pipeline(transaction=False)
        for w in waits:
            assert w.entry_id is not None
            pipe.xrange(self.keys.jobs, w.entry_id, w.entry_id)
        found = await pipe.execute()
        # A worker deletes an entry in the script that stores its result, so the results of entries found
        # missing above are in the reply list by now, or never coming: take what is there, then decide.
        for raw in await self.redis.lpop(self.keys.reply(self.gateway_id), 1 << 20) or []:
            self._deliver(raw)
        lost = [w for w, entries in zip(waits, found, strict=True) if not entries and w.result is None]
        if not lost:
            return
        log.warning("%d accepted jobs vanished from Redis%s; queueing them again", len(lost),
                    " (it restarted)" if restarted else "")
        await ensure_group(self.redis, self.keys)
        await self._enqueue(lost, max_depth=1 << 62)  # already accepted: never refused
        self.metrics.jobs_requeued.inc(len(lost))

    def _mark_down(self, exc: BaseException) -> None:
        if self.redis_ok:
            log.error("Redis at %s unreachable: %s", describe_url(self.config.redis_url), exc)
        self.redis_ok = False
        self._redis_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.metrics.redis_up.set(0)

    def _mark_up(self) -> None:
        if not self.redis_ok:
            log.info("Redis at %s answers", describe_url(self.config.redis_url))
        self.redis_ok = True
        self.metrics.redis_up.set(1)
