"""Calls made in one event-loop step, merged into one: a server batching across requests.

OpenRLHF sends one sample per request, many at once, so the gateway's Redis calls per item (the cache's lookup
and store) come in as many small calls, each a round trip that wakes Redis and then the gateway. The requests
that arrived together run their first steps together; what they ask for in that step goes to Redis as one call
right after it. Nothing waits for a batch to fill: a call made alone goes out alone, after the same step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")


class StepBatcher(Generic[A, R]):
    """`await batcher(args)` returns `call_many(args)`, where calls made in the same step share one
    `call_many` over all their args (in call order). `call_many` returns one result per arg; if it raises,
    every call of its batch raises that error."""

    def __init__(self, call_many: Callable[[list[A]], Awaitable[Sequence[R]]]) -> None:
        self._call_many = call_many
        self._open: list[tuple[Sequence[A], asyncio.Future[list[R]]]] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, args: Sequence[A]) -> list[R]:
        if not args:
            return []
        loop = asyncio.get_running_loop()
        if self._open is None:
            self._open = []
            loop.call_soon(self._flush)
        future: asyncio.Future[list[R]] = loop.create_future()
        self._open.append((args, future))
        return await future

    def _flush(self) -> None:
        batch, self._open = self._open or [], None
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Sequence[A], asyncio.Future[list[R]]]]) -> None:
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
        except Exception as exc:  # every caller gets the failure (a cancelled caller is already done)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        at = 0
        for args, future in batch:
            if not future.done():
                future.set_result(results[at:at + len(args)])
            at += len(args)

    async def close(self) -> None:
        """Waits for the batches already sent."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
