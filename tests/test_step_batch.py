"""Calls made in one event-loop step share one call (service/step_batch.py); the Redis cache store's lookups
and stores of concurrent requests go to Redis together, each caller getting its own answers."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Callable, Coroutine, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from acecoder_reward.sandbox_worker.executor import Limits
from acecoder_reward.sandbox_worker.queue_keys import DATA_FIELD
from acecoder_reward.service.cache_stores import RedisStore
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.queued_executor import QueueConfig, QueuedExecutor
from acecoder_reward.service.step_batch import StepBatcher

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMITS = Limits(test_timeout_s=6, program_timeout_s=15, memory_mb=4096, max_processes=8, max_open_files=64,
                max_file_bytes=1 << 24, max_output_bytes=1 << 23, max_result_bytes=1 << 24)


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail

    async def __call__(self, args: list[int]) -> list[int]:
        self.calls.append(list(args))
        await asyncio.sleep(0.01)
        if self.fail:
            raise ConnectionError("Redis went away")
        return [a * 10 for a in args]


def test_calls_of_one_step_go_together_and_each_gets_its_own_results() -> None:
    async def scenario() -> None:
        call = Recorder()
        batch = StepBatcher(call)
        assert await asyncio.gather(batch([1, 2]), batch([3]), batch([]), batch([4, 5, 6])) == [
            [10, 20], [30], [], [40, 50, 60]]
        assert call.calls == [[1, 2, 3, 4, 5, 6]]
        assert await batch([7]) == [70] and await batch([8]) == [80]  # apart in time: apart
        assert call.calls[1:] == [[7], [8]]
        await batch.close()

    asyncio.run(scenario())


def test_a_failed_call_fails_every_caller_of_its_batch_and_a_cancelled_caller_harms_none() -> None:
    async def scenario() -> None:
        batch = StepBatcher(Recorder(fail=True))
        results = await asyncio.gather(batch([1]), batch([2]), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)

        call = Recorder()
        batch = StepBatcher(call)
        gone = asyncio.ensure_future(batch([1]))
        kept = asyncio.ensure_future(batch([2]))
        await asyncio.sleep(0)
        gone.cancel()
        assert await kept == [20]
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert call.calls == [[2]]  # cancelled before its batch went out: its args were not sent

        in_flight = asyncio.ensure_future(batch([3]))
        kept = asyncio.ensure_future(batch([4]))
        while len(call.calls) < 2:  # until the batch is out: cancelling one caller leaves the other its answer
            await asyncio.sleep(0)
        in_flight.cancel()
        assert await kept == [40] and call.calls[1:] == [[3, 4]]
        await batch.close()

    asyncio.run(scenario())


def test_a_full_batch_goes_at_once_and_the_batch_runs_in_no_callers_context() -> None:
    seen: list[str] = []
    who = contextvars.ContextVar("who", default="nobody")

    async def call_many(args: list[int]) -> list[int]:
        seen.append(who.get())
        return args

    async def as_caller(name: str, batch: StepBatcher[int, int], args: list[int]) -> list[int]:
        who.set(name)
        return await batch(args)

    async def scenario() -> None:
        batch = StepBatcher(call_many, max_batch=3)
        calls = Recorder()
        counted = StepBatcher(calls, max_batch=3)
        assert await asyncio.gather(*(counted([n]) for n in range(7))) == [[n * 10] for n in range(7)]
        assert calls.calls == [[0, 1, 2], [3, 4, 5], [6]]
        assert await asyncio.gather(as_caller("a", batch, [1]), as_caller("b", batch, [2])) == [[1], [2]]
        assert seen == ["nobody"]
        reused = [5]
        pending = asyncio.ensure_future(batch(reused))
        await asyncio.sleep(0)
        reused.append(6)  # the caller's list changes before the batch goes: its own args are what it gets
        assert await pending == [5]
        await batch.close()

    asyncio.run(scenario())


def test_a_call_many_that_miscounts_its_results_is_an_error_not_a_misrouted_answer() -> None:
    async def short(args: list[int]) -> Sequence[int]:
        return args[:-1]

    async def scenario() -> None:
        batch = StepBatcher(short)
        with pytest.raises(RuntimeError, match="results"):
            await asyncio.gather(batch([1]), batch([2]))

    asyncio.run(scenario())


class CountingScript:
    def __init__(self, script: Any) -> None:
        self.script = script
        self.calls = 0

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        return await self.script(**kwargs)


def test_the_redis_store_serves_concurrent_requests_in_one_round_trip_each_way() -> None:
    sync = redis.Redis.from_url(REDIS_URL)

    async def scenario(prefix: str) -> None:
        store = RedisStore(aioredis.Redis.from_url(REDIS_URL), prefix, max_bytes=1 << 20, ttl_s=60)
        gets, puts = CountingScript(store._get), CountingScript(store._put)
        store._get, store._put = gets, puts  # type: ignore[method-assign]  # the real scripts, counted
        try:
            await asyncio.gather(*(store.put_many([(f"e{n}", {b"code": b"c%d" % n, b"t": b"%d" % n})])
                                   for n in range(20)))
            assert puts.calls == 1
            found = await asyncio.gather(*(store.get_many([(f"e{n}", [b"code", b"t", b"u"]), ("none", [b"code"])])
                                           for n in range(20)))
            assert gets.calls == 1
            assert found == [[[b"c%d" % n, b"%d" % n, None], [None]] for n in range(20)]
            assert store.used_bytes == int(sync.get(f"{prefix}:cache:bytes") or 0) > 0
        finally:
            await store.close()

    on_fresh_prefix(scenario)


def on_fresh_prefix(scenario: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """Runs `scenario(prefix)` on keys of its own in the suite's Redis, deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(scenario(prefix))
    finally:
        sync = redis.Redis.from_url(REDIS_URL)
        for key in sync.scan_iter(f"{prefix}*"):
            sync.delete(key)


def queued_executor(prefix: str, max_depth: int) -> QueuedExecutor:
    return QueuedExecutor(QueueConfig(REDIS_URL, prefix, max_depth=max_depth, request_timeout_s=30,
                                      heartbeat_ttl_s=10, audit_interval_s=60), Metrics())


def waiting(datas: list[bytes]) -> list[Any]:
    """Stand-ins for the executor's waiting jobs: what its enqueue reads and sets."""
    request = SimpleNamespace(gone=False)
    return [SimpleNamespace(job=SimpleNamespace(encode_data=lambda d=d: d), request=request, result=None,
                            entry_id=None) for d in datas]


def test_the_job_lists_of_one_step_are_enqueued_in_one_call_each_whole_or_refused() -> None:
    """Requests that enqueue in the same step share one script call; each list still fits the bound whole
    or is refused whole (429), as when each went alone."""
    sync = redis.Redis.from_url(REDIS_URL)

    async def scenario(prefix: str) -> None:
        executor = queued_executor(prefix, max_depth=5)
        script = CountingScript(executor._enqueue_script)
        executor._enqueue_script = script  # type: ignore[method-assign]  # the real script, counted
        try:
            lists = [[b"a1", b"a2"], [b"b1", b"b2", b"b3", b"b4"], [b"c1", b"c2", b"c3"], [b"d1"]]
            waits = [waiting(jobs) for jobs in lists]
            answers = await asyncio.gather(*(executor._enqueues([(5, w)]) for w in waits))
            assert script.calls == 1
            # a fits; b (2 + 4 > 5) gets the depth; c fits; d (5 + 1 > 5) gets the depth
            assert [("full", a[0]) if isinstance(a[0], int) else ("ids", len(a[0])) for a in answers] == [
                ("ids", 2), ("full", 2), ("ids", 3), ("full", 5)]
            assert sync.xlen(f"{prefix}:jobs") == 5
            stream = sync.xrange(f"{prefix}:jobs")
            assert [fields[DATA_FIELD.encode()] for _, fields in stream] == [b"a1", b"a2", b"c1", b"c2", b"c3"]
            assert [w.entry_id for w in waits[0] + waits[2]] == [entry_id for entry_id, _ in stream]
            assert all(w.entry_id is None for w in waits[1] + waits[3])
            assert isinstance((await executor._enqueues([(1 << 62, waiting([b"e1"]))]))[0], list)  # no bound
            assert script.calls == 2 and sync.xlen(f"{prefix}:jobs") == 6
        finally:
            await executor._enqueues.close()
            await executor.redis.aclose()

    on_fresh_prefix(scenario)


def test_jobs_of_a_request_gone_while_its_enqueue_was_out_are_withdrawn() -> None:
    """A client that goes away while its request's jobs are being added: the ids come back after the request
    has ended, and the jobs are withdrawn then, not left for workers to run for nobody."""
    sync = redis.Redis.from_url(REDIS_URL)

    async def scenario(prefix: str) -> None:
        executor = queued_executor(prefix, max_depth=100)
        executor.redis_ok, executor.live_workers = True, 1  # what its poll finds with a worker up
        real, out = executor._enqueue_script, asyncio.Event()

        async def slow_script(**kwargs: Any) -> Any:
            out.set()
            await asyncio.sleep(0.05)  # the call is out when the request goes
            return await real(**kwargs)

        executor._enqueue_script = slow_script  # type: ignore[assignment]
        items = [(f"def f():\n    return {n}\n", [f"assert f() == {n}"]) for n in range(3)]
        request = asyncio.ensure_future(executor.execute_many(items, LIMITS))
        await out.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await executor._enqueues.close()
        try:
            assert sync.xlen(f"{prefix}:jobs") == 0
            assert int(sync.hget(f"{prefix}:stats", "withdrawn") or 0) == 3
        finally:
            await executor.redis.aclose()

    on_fresh_prefix(scenario)
