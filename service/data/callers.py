"""Where `filter-tests` and `pass-rates` send their `/v1/rewards` bodies: the service's reward path in this process
(the embedded sandbox pool, no reward model: these commands need only tests), or a running service over HTTP.

Either way a refusal of the body (an invalid request: a test too long, too many tests) is the row's fault and
becomes RowError, so the run goes on and the row is reported; a busy service (429/503) or a dropped connection is
retried; anything else (a bad token, a server error) stops the run (SystemExit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import ValidationError

from acecoder_reward.service import protocol
from acecoder_reward.service.data.ledger import RowError
from acecoder_reward.service.errors import InvalidRequest, ServiceError
from acecoder_reward.service.settings import Settings

Caller = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]  # a /v1/rewards body -> its answer
RETRIES = 8
RETRY_STATUSES = frozenset({429, 503})
MAX_WAIT_S = 30.0


@asynccontextmanager
async def in_process(settings: Settings, cache: bool = True) -> AsyncIterator[Caller]:
    """With `cache` (and ACECODER_TEST_CACHE on), repeated completions of a question run once, as on a gateway."""
    from acecoder_reward.service.executors import embedded_executor
    from acecoder_reward.service.metrics import Metrics
    from acecoder_reward.service.result_cache import open_cache
    from acecoder_reward.service.rewards import RewardService

    metrics = Metrics()
    async with embedded_executor(settings) as executor, open_cache(settings, metrics) as results:
        rewards = RewardService(executor, settings, metrics, cache=results)

        async def call(body: dict[str, Any]) -> dict[str, Any]:
            try:
                request = protocol.RewardRequest.model_validate(body if cache else {**body, "cache": False})
                return (await rewards.score(request)).model_dump()
            except ValidationError as exc:
                raise RowError(f"refused: {exc.errors()[0]['msg']}") from exc
            except InvalidRequest as exc:
                raise RowError(f"refused: {exc.message}") from exc
            except ServiceError as exc:
                raise SystemExit(f"{exc.field or 'request'}: {exc.message}") from exc

        yield call


@asynccontextmanager
async def remote(url: str, token: str | None, cache: bool = True) -> AsyncIterator[Caller]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=600, headers=headers) as http:
        async def call(body: dict[str, Any]) -> dict[str, Any]:
            for attempt in range(RETRIES + 1):
                try:
                    response = await http.post("/v1/rewards", json=body if cache else {**body, "cache": False})
                except httpx.TransportError as exc:
                    if attempt == RETRIES:
                        raise SystemExit(f"{url}: {type(exc).__name__}: {exc}") from exc
                    await asyncio.sleep(min(2.0**attempt, MAX_WAIT_S))
                    continue
                if response.status_code in RETRY_STATUSES and attempt < RETRIES:
                    await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), MAX_WAIT_S))
                    continue
                return _answer(response)
            raise AssertionError("unreachable")

        yield call


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 422:
        error = response.json().get("error", {})
        raise RowError(f"refused: {error.get('message', response.text[:300])}")
    if response.status_code != 200:
        raise SystemExit(f"/v1/rewards: {response.status_code} {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return answer
