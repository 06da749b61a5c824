"""The micro-batcher in front of a reward-model backend.

Callers `await score_many(sequences)`; each new input becomes an entry (its future, its enqueue time) on the
batcher's own queue. A batch closes at `max_items`, at `max_tokens`, or when its oldest entry has waited
`max_wait_s`, whichever comes first; with no batch in flight it leaves at once, so a lone request pays no wait.
Identical inputs in flight are computed once (dedup), recent ones are answered from a bounded LRU cache keyed by
a hash of the token ids, and an entry whose every caller went away is dropped before compute. Admission is a
bounded count of queued + computing inputs; past it, `Overloaded` (429).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from acecoder_reward.service.errors import Overloaded
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.rm_backends import ScoreBackend


@dataclass(frozen=True)
class BatchLimits:
    max_items: int = 64
    max_tokens: int = 32768
    max_wait_s: float = 0.005
    max_inflight: int = 4
    max_pending: int = 8192
    cache_items: int = 100_000


@dataclass(eq=False)
class _Entry:
    key: bytes
    ids: Sequence[int]
    future: asyncio.Future[float]
    enqueued: float = field(default_factory=time.monotonic)
    waiters: int = 1


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def input_key(ids: Sequence[int]) -> bytes:
    return hashlib.blake2b(array("l", ids).tobytes(), digest_size=16).digest()


class MicroBatcher:
    def __init__(self, backend: ScoreBackend, limits: BatchLimits, metrics: Metrics) -> None:
        self.backend = backend
        self.limits = limits
        self.metrics = metrics
        self._queue: deque[_Entry] = deque()
        self._in_flight: dict[bytes, _Entry] = {}  # queued or computing, by key: the dedup table
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._pending = 0  # entries queued or computing (what admission bounds)
        self._batches = 0  # batches being computed
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="rm-batcher")

    async def stop(self) -> None:
        for task in [self._loop_task, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._loop_task, *self._tasks] if t], return_exceptions=True)

    async def score_many(self, inputs: Sequence[Sequence[int]]) -> list[float]:
        """Raw scores in input order. Raises Overloaded past the admission limit (nothing is queued then)."""
        keys = [input_key(ids) for ids in inputs]
        fresh = {k for k in keys if k not in self._cache and k not in self._in_flight}
        if self._pending + len(fresh) > self.limits.max_pending:
            self.metrics.rejected.labels("rm_overloaded").inc()
            raise Overloaded(f"more than {self.limits.max_pending} model inputs pending; retry later")
        results: list[float | None] = [None] * len(inputs)
        waits: list[tuple[int, _Entry]] = []
        for n, (key, ids) in enumerate(zip(keys, inputs, strict=True)):
            cached = self._cache_get(key)
            if cached is not None:
                results[n] = cached
                self.metrics.rm_inputs.labels("cache").inc()
            elif (entry := self._in_flight.get(key)) is not None:
                entry.waiters += 1
                waits.append((n, entry))
                self.metrics.rm_inputs.labels("dedup").inc()
            else:
                waits.append((n, self._enqueue(key, ids)))
        if waits:
            await self._wait(waits, results)
        scores = [r for r in results if r is not None]
        assert len(scores) == len(inputs)
        return scores

    async def _wait(self, waits: list[tuple[int, _Entry]], results: list[float | None]) -> None:
        distinct = {id(e): e for _, e in waits}
        joined = asyncio.gather(*(e.future for e in distinct.values()))
        try:
            # shield: one caller leaving must not cancel a future other callers share.
            await asyncio.shield(joined)
        except asyncio.CancelledError:
            joined.add_done_callback(_retrieve)  # its outcome is nobody's now; keep asyncio from logging it
            for _, entry in waits:
                entry.waiters -= 1  # at 0 and still queued, the batch loop drops it
            self._wakeup.set()
            raise
        for n, entry in waits:
            results[n] = entry.future.result()

    def _enqueue(self, key: bytes, ids: Sequence[int]) -> _Entry:
        entry = _Entry(key, ids, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        self._in_flight[key] = entry
        self._set_pending(self._pending + 1)
        self._wakeup.set()
        return entry

    def _cache_get(self, key: bytes) -> float | None:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
        return value

    def _cache_put(self, key: bytes, value: float) -> None:
        if self.limits.cache_items <= 0:
            return
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.limits.cache_items:
            self._cache.popitem(last=False)

    def _set_pending(self, value: int) -> None:
        self._pending = value
        self.metrics.rm_pending.set(value)

    async def _run(self) -> None:
        slot = asyncio.Semaphore(self.limits.max_inflight)
        while True:
            await self._wait_for_batch()
            await slot.acquire()
            batch = self._take_batch()
            if not batch:
                slot.release()
                continue
            task = asyncio.create_task(self._compute(batch, slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wait_for_batch(self) -> None:
        """Returns when a batch should leave: full, its oldest entry waited max_wait, or nothing computing."""
        while True:
            self._drop_abandoned()
            if self._queue:
                if self._batches == 0 or self._queue_full():
                    return
                left = self._queue[0].enqueued + self.limits.max_wait_s - time.monotonic()
                if left <= 0:
                    return
            else:
                left = None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                pass

    def _queue_full(self) -> bool:
        tokens = 0
        for n, entry in enumerate(self._queue):
            tokens += len(entry.ids)
            if n + 1 >= self.limits.max_items or tokens >= self.limits.max_tokens:
                return True
        return False

    def _drop_abandoned(self) -> None:
        kept: deque[_Entry] = deque()
        for entry in self._queue:
            if entry.waiters > 0:
                kept.append(entry)
                continue
            self.metrics.rm_inputs.labels("dropped").inc()
            self._in_flight.pop(entry.key, None)
            entry.future.cancel()
            self._set_pending(self._pending - 1)
        self._queue = kept

    def _take_batch(self) -> list[_Entry]:
        self._drop_abandoned()
        batch: list[_Entry] = []
        tokens = 0
        while self._queue and len(batch) < self.limits.max_items:
            size = len(self._queue[0].ids)
            if batch and tokens + size > self.limits.max_tokens:
                break
            batch.append(self._queue.popleft())
            tokens += size
        return batch

    async def _compute(self, batch: list[_Entry], slot: asyncio.Semaphore) -> None:
        self._batches += 1
        now = time.monotonic()
        for entry in batch:
            self.metrics.rm_queue_time.observe(now - entry.enqueued)
        self.metrics.rm_batch_items.observe(len(batch))
        self.metrics.rm_batch_tokens.observe(sum(len(e.ids) for e in batch))
        self.metrics.rm_inputs.labels("computed").inc(len(batch))
        try:
            scores = await self.backend.score([e.ids for e in batch])
        except Exception as exc:  # handed to every caller of the batch; the backend typed it
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
        else:
            for entry, score in zip(batch, scores, strict=True):
                self._cache_put(entry.key, score)
                if not entry.future.done():
                    entry.future.set_result(score)
        finally:
            for entry in batch:
                self._in_flight.pop(entry.key, None)
                if entry.future.done() and not entry.future.cancelled():
                    entry.future.exception()  # retrieved: a batch nobody waits for any more logs nothing
            self._set_pending(self._pending - len(batch))
            self._batches -= 1
            slot.release()
            self._wakeup.set()
