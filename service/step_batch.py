"""Calls made in one event-loop step, merged into one: a server batching across requests.

OpenRLHF sends one sample per request, many at once, so the gateway's Redis calls per item (the cache's lookup
and store, the job's enqueue) come in as many small calls, each a round trip that wakes Redis and then the
gateway. The requests that arrived together run their first steps together; what they ask for in that step
goes to Redis as one call in the loop's next iteration. Nothing waits for a batch to fill: a call made alone
goes out alone.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")
MAX_BATCH = 256  # arguments per merged call: one script call must not hold Redis for long


class StepBatcher(Generic[A, R]):
    """`await batcher(args)` returns `call_many(args)`, where calls made in the same step share one
    `call_many` over all their args (in call order, at most `max_batch` per call). `call_many` returns one
    result per arg; if it raises, every call of its batch raises that error. A caller cancelled before its
    batch goes out sends nothing; one cancelled while it is out does not get its results (`call_many` must
    itself deal with what it did for a caller that went away)."""

    def __init__(self, call_many: Callable[[list[A]], Awaitable[Sequence[R]]], max_batch: int = MAX_BATCH) -> None:
        self._call_many = call_many
        self._max_batch = max_batch
        self._open: list[tuple[list[A], asyncio.Future[list[R]]]] | None = None
        self._open_args = 0
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, args: Sequence[A]) -> list[R]:
        if not args:
            return []
        loop = asyncio.get_running_loop()
        if self._open is not None and self._open_args + len(args) > self._max_batch:
            self._flush()  # full: it goes now, this call opens the next batch
        if self._open is None:
            self._open, self._open_args = [], 0
            # A fresh context: the batch's work is no one request's (log lines must not name the first one).
            loop.call_soon(self._flush, context=contextvars.Context())
        future: asyncio.Future[list[R]] = loop.create_future()
        self._open.append((list(args), future))  # a copy: the caller may reuse its list
        self._open_args += len(args)
        return await future

    def _flush(self) -> None:
        batch, self._open = self._open, None
        if not batch:
            return  # sent early (full), or already flushed by close()
        task = asyncio.get_running_loop().create_task(self._run(batch), context=contextvars.Context())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[list[A], asyncio.Future[list[R]]]]) -> None:
        batch = [(args, future) for args, future in batch if not future.done()]  # callers gone by now ask nothing
        if not batch:
            return
        try:
            results = list(await self._call_many([a for args, _ in batch for a in args]))
            if len(results) != sum(len(args) for args, _ in batch):
                raise RuntimeError(f"a batched call returned {len(results)} results for its arguments")
        except asyncio.CancelledError:  # shutting down: the callers are cancelled too
            for _, future in batch:
                future.cancel()
            raise
        except BaseException as exc:  # every caller gets the failure (a cancelled caller is already done)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for args, future in batch:
            if not future.done():
                future.set_result(results[at:at + len(args)])
            at += len(args)

    async def close(self) -> None:
        """Sends the batch still open, and waits for every batch sent."""
        self._flush()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
