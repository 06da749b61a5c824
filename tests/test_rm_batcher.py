"""The micro-batcher on its own, behind the `ScoreBackend` seam: a small in-memory backend that records the
batches it gets and can be held, so batch closing, dedup, cache, drops and admission are checked exactly. The
same batcher in front of a real vLLM server and the real torch model is tested in test_rm.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from acecoder_reward.service.errors import BadGateway, Overloaded
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.rm_batcher import BatchLimits, MicroBatcher

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingBackend:
    """score = sum of the token ids; `hold` blocks every call until released."""

    name = "recording"

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail_with: Exception | None = None

    async def score(self, batch: Sequence[Sequence[int]]) -> list[float]:
        self.batches.append([list(ids) for ids in batch])
        await self.hold.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [float(sum(ids)) for ids in batch]

    def health(self) -> tuple[bool, dict[str, object]]:
        return True, {}

    async def aclose(self) -> None:
        pass


def _count(metrics: Metrics, source: str) -> float:
    return metrics.rm_inputs.labels(source)._value.get()


async def _batcher(**limits: float) -> tuple[MicroBatcher, RecordingBackend, Metrics]:
    backend, metrics = RecordingBackend(), Metrics()
    batcher = MicroBatcher(backend, BatchLimits(**limits), metrics)  # type: ignore[arg-type]
    batcher.start()
    return batcher, backend, metrics


async def test_scores_come_back_in_input_order() -> None:
    batcher, _, _ = await _batcher()
    inputs = [[i, i + 1, 7] for i in range(40)]
    assert await batcher.score_many(inputs) == [float(sum(x)) for x in inputs]
    await batcher.stop()


async def test_concurrent_callers_share_batches_while_one_is_computing() -> None:
    batcher, backend, _ = await _batcher(max_items=16, max_wait_s=0.05, max_inflight=1)
    backend.hold.clear()
    first = asyncio.create_task(batcher.score_many([[1]]))
    await asyncio.sleep(0.01)  # the lone first input leaves at once: nothing was computing
    rest = [asyncio.create_task(batcher.score_many([[i]])) for i in range(2, 40)]
    await asyncio.sleep(0.01)
    backend.hold.set()
    assert await first == [1.0]
    assert [await t for t in rest] == [[float(i)] for i in range(2, 40)]
    sizes = [len(b) for b in backend.batches]
    assert sizes[0] == 1 and max(sizes) == 16 and sum(sizes) == 39, sizes
    await batcher.stop()


async def test_batch_closes_at_token_budget() -> None:
    batcher, backend, _ = await _batcher(max_items=100, max_tokens=10, max_inflight=1)
    backend.hold.clear()
    waiting = asyncio.create_task(batcher.score_many([[i] * 4 for i in range(6)]))
    await asyncio.sleep(0.05)
    backend.hold.set()
    await waiting
    assert [sum(len(ids) for ids in b) for b in backend.batches] == [8, 8, 8]
    await batcher.stop()


async def test_identical_inputs_in_flight_are_computed_once_and_repeats_hit_the_cache() -> None:
    batcher, backend, metrics = await _batcher()
    backend.hold.clear()
    calls = [asyncio.create_task(batcher.score_many([[5, 6], [5, 6]])) for _ in range(3)]
    await asyncio.sleep(0.02)
    backend.hold.set()
    assert [await c for c in calls] == [[11.0, 11.0]] * 3
    assert [len(b) for b in backend.batches] == [1]
    assert _count(metrics, "computed") == 1 and _count(metrics, "dedup") == 5
    assert await batcher.score_many([[5, 6]]) == [11.0]
    assert _count(metrics, "cache") == 1 and len(backend.batches) == 1
    await batcher.stop()


async def test_cache_is_bounded() -> None:
    batcher, backend, _ = await _batcher(cache_items=2)
    for i in range(3):
        await batcher.score_many([[i]])
    await batcher.score_many([[0]])  # evicted (oldest of three): computed again
    assert len(backend.batches) == 4
    await batcher.stop()


async def test_an_input_whose_caller_left_is_dropped_before_compute() -> None:
    batcher, backend, metrics = await _batcher(max_inflight=1)
    backend.hold.clear()
    busy = asyncio.create_task(batcher.score_many([[1]]))
    await asyncio.sleep(0.01)
    leaver = asyncio.create_task(batcher.score_many([[2]]))
    stayer_shared = asyncio.create_task(batcher.score_many([[3]]))
    await asyncio.sleep(0.01)
    leaver.cancel()
    await asyncio.sleep(0.01)
    backend.hold.set()
    assert await busy == [1.0] and await stayer_shared == [3.0]
    assert [3] in backend.batches[1] and all([2] not in b for b in backend.batches)
    assert _count(metrics, "dropped") == 1
    await batcher.stop()


async def test_a_shared_input_survives_one_caller_leaving() -> None:
    batcher, backend, _ = await _batcher(max_inflight=1)
    backend.hold.clear()
    busy = asyncio.create_task(batcher.score_many([[1]]))
    await asyncio.sleep(0.01)
    a, b = (asyncio.create_task(batcher.score_many([[9]])) for _ in range(2))
    await asyncio.sleep(0.01)
    a.cancel()
    backend.hold.set()
    assert await busy == [1.0] and await b == [9.0]
    await batcher.stop()


async def test_admission_limit_refuses_whole_request_and_queues_nothing() -> None:
    batcher, backend, metrics = await _batcher(max_pending=4)
    backend.hold.clear()
    held = asyncio.create_task(batcher.score_many([[1], [2], [3]]))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded):
        await batcher.score_many([[4], [5]])
    assert metrics.rm_pending._value.get() == 3
    backend.hold.set()
    await held
    assert await batcher.score_many([[4], [5]]) == [4.0, 5.0]
    assert metrics.rm_pending._value.get() == 0
    await batcher.stop()


async def test_backend_errors_reach_every_caller_and_nothing_is_cached() -> None:
    batcher, backend, _ = await _batcher()
    backend.fail_with = BadGateway("upstream broke")
    with pytest.raises(BadGateway):
        await batcher.score_many([[1], [2]])
    backend.fail_with = None
    assert await batcher.score_many([[1], [2]]) == [1.0, 2.0]
    await batcher.stop()
