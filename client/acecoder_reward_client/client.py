"""`RewardClient` and `AsyncRewardClient`: the reward service over HTTP, with connection reuse, chunking of large
batches, and retries with backoff on 429/503 (honouring `Retry-After`) and on connection failures.

    with RewardClient("http://rewards:8000", token="...") as client:
        result = client.score([Item(response=code, tests=["assert f(1) == 2"])], tests_reward="binary")
        result.rewards  # [1.0]
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from acecoder_reward_client.errors import RewardServiceError, UnavailableError, error_for
from acecoder_reward_client.types import Item, ItemResult, Limits, Reward, RewardResult, TestsReward

RETRY_STATUSES = frozenset({429, 503})
ItemLike = Item | dict[str, Any]


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_s: float = 0.5  # first wait; doubles each retry, with jitter
    max_backoff_s: float = 30.0

    def wait_s(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return min(self.backoff_s * 2**attempt, self.max_backoff_s) * (0.5 + random.random() / 2)


def _body(items: Sequence[ItemLike], reward: Reward, tests_reward: TestsReward, weights: dict[str, float] | None,
          limits: Limits | None, cache: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"items": [i.to_json() if isinstance(i, Item) else dict(i) for i in items],
                            "reward": reward, "tests_reward": tests_reward}
    if not cache:  # sent only when off: servers from before the test-result cache refuse the field
        body["cache"] = False
    if weights is not None:
        body["weights"] = weights
    if limits is not None:
        body["limits"] = limits.to_json()
    return body


def _chunks(items: Sequence[ItemLike], size: int) -> list[Sequence[ItemLike]]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [items]


def _result(parts: Sequence[dict[str, Any]]) -> RewardResult:
    items = [ItemResult.from_json(i) for part in parts for i in part["items"]]
    return RewardResult(rewards=[i.reward for i in items], items=items)


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _parse(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        raise error_for(response.status_code, body)
    if not isinstance(body, dict):
        raise RewardServiceError("the reward service answered a body that is not JSON", status=200)
    return body


class RewardClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 300.0, chunk_size: int = 256,
                 retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.chunk_size = chunk_size
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=_headers(token),
                                  transport=transport)

    def score(self, items: Sequence[ItemLike], *, reward: Reward = "tests", tests_reward: TestsReward = "pass_rate",
              weights: dict[str, float] | None = None, limits: Limits | None = None,
              cache: bool = True) -> RewardResult:
        """Rewards in item order; batches larger than `chunk_size` go as several requests, one after another.
        `cache=False`: every item runs, none is answered from the server's test-result cache."""
        parts = [self.post("/v1/rewards", _body(chunk, reward, tests_reward, weights, limits, cache))
                 for chunk in _chunks(items, self.chunk_size)]
        return _result(parts)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One call with the retry policy: 429/503 and connection failures are retried, nothing else."""
        for attempt in range(self.retry.max_retries + 1):
            last = attempt == self.retry.max_retries
            try:
                response = self._http.post(path, json=body)
            except httpx.TransportError as exc:
                if last or isinstance(exc, httpx.TimeoutException):
                    raise UnavailableError(f"the reward service did not answer: {exc!r}") from exc
                time.sleep(self.retry.wait_s(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(self.retry.wait_s(attempt, response.headers.get("Retry-After")))
                continue
            return _parse(response)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRewardClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 300.0, chunk_size: int = 256,
                 max_concurrent_chunks: int = 8, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.chunk_size = chunk_size
        self.retry = retry or RetryPolicy()
        self._slots = asyncio.Semaphore(max_concurrent_chunks)
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=_headers(token),
                                       transport=transport)

    async def score(self, items: Sequence[ItemLike], *, reward: Reward = "tests",
                    tests_reward: TestsReward = "pass_rate", weights: dict[str, float] | None = None,
                    limits: Limits | None = None, cache: bool = True) -> RewardResult:
        """Rewards in item order; chunks of `chunk_size` go concurrently (at most `max_concurrent_chunks`).
        `cache=False`: every item runs, none is answered from the server's test-result cache."""
        async def one(chunk: Sequence[ItemLike]) -> dict[str, Any]:
            async with self._slots:
                return await self.post("/v1/rewards", _body(chunk, reward, tests_reward, weights, limits, cache))

        parts = await asyncio.gather(*(one(c) for c in _chunks(items, self.chunk_size)))
        return _result(parts)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.retry.max_retries + 1):
            last = attempt == self.retry.max_retries
            try:
                response = await self._http.post(path, json=body)
            except httpx.TransportError as exc:
                if last or isinstance(exc, httpx.TimeoutException):
                    raise UnavailableError(f"the reward service did not answer: {exc!r}") from exc
                await asyncio.sleep(self.retry.wait_s(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                await asyncio.sleep(self.retry.wait_s(attempt, response.headers.get("Retry-After")))
                continue
            return _parse(response)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
