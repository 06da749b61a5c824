"""Reward-model backends: where a batch of token-id sequences becomes raw AceCodeRM scores.

`VllmBackend` calls vLLM servers (`POST /classify`, token ids in, `use_activation: false`), round-robin; its
failures are translated here into our errors (502/503/504). A batch is retried (on the next server) when it
was not computed or its answer was lost: connection refused or dropped, or the server said 503. Scoring is a
pure function, so a resend is safe; but not after a timeout, which would double the load on a server that is
already too slow.

`InProcessBackend` runs `models.hf_backend.HfScorer` on one thread (the GPU, or torch's own CPU threads, is the
parallelism; two forwards at once would only contend).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import httpx
import orjson

from acecoder_reward.service.errors import BadGateway, DeadlineExceeded, ServiceError, Unavailable
from acecoder_reward.service.metrics import Metrics

log = logging.getLogger(__name__)
JSON_HEADERS = {"content-type": "application/json"}


class ScoreBackend(Protocol):
    name: str

    async def score(self, batch: Sequence[Sequence[int]]) -> list[float]: ...

    def health(self) -> tuple[bool, dict[str, object]]: ...

    async def aclose(self) -> None: ...


class _Retryable(Exception):
    """This server did not compute the batch; another one may."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


class VllmBackend:
    name = "vllm"

    def __init__(self, urls: Sequence[str], model: str, *, timeout_s: float, retries: int, metrics: Metrics) -> None:
        self.urls = list(urls)
        self.model = model
        self.retries = retries
        self.metrics = metrics
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        # One pooled client per server; connections are reused across batches, and given up after 2 s idle:
        # vLLM's server closes idle ones after 5 s, and a request sent on a connection it is closing is lost.
        limits = httpx.Limits(max_connections=64, keepalive_expiry=2.0)
        self._clients = [httpx.AsyncClient(base_url=u, timeout=timeout, limits=limits) for u in self.urls]
        self._turn = itertools.count()
        self._last_ok: float | None = None
        self._last_error: str | None = None

    async def score(self, batch: Sequence[Sequence[int]]) -> list[float]:
        first = next(self._turn)
        attempts = min(len(self.urls), self.retries + 1) if len(self.urls) > 1 else self.retries + 1
        error: ServiceError = Unavailable("no reward-model server configured")
        for attempt in range(attempts):
            n = (first + attempt) % len(self.urls)
            try:
                scores = await self._call(n, batch)
            except _Retryable as exc:
                error = exc.error
                self._last_error = f"{self.urls[n]}: {error.message}"
                if attempt + 1 < attempts:
                    await asyncio.sleep(0.05 * attempt)  # same server again: give it a moment
                continue
            self._last_ok = time.monotonic()
            return scores
        raise error

    async def _call(self, n: int, batch: Sequence[Sequence[int]]) -> list[float]:
        body = orjson.dumps({"model": self.model, "input": [list(ids) for ids in batch], "use_activation": False})
        started = time.perf_counter()
        try:
            response = await self._clients[n].post("/classify", content=body, headers=JSON_HEADERS)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.metrics.rm_upstream_errors.labels("connect").inc()
            raise _Retryable(Unavailable(f"reward-model server {self.urls[n]} is unreachable")) from exc
        except httpx.TimeoutException as exc:
            self.metrics.rm_upstream_errors.labels("timeout").inc()
            raise DeadlineExceeded(f"reward-model server {self.urls[n]} did not answer in time") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            # The connection dropped (a server restarting, or closing an idle connection as we sent): the batch
            # may have been computed, but scoring is a pure function, so sending it again is safe.
            self.metrics.rm_upstream_errors.labels("dropped").inc()
            raise _Retryable(Unavailable(f"reward-model server {self.urls[n]} dropped the connection")) from exc
        except httpx.HTTPError as exc:
            self.metrics.rm_upstream_errors.labels("other").inc()
            raise BadGateway(f"reward-model server {self.urls[n]} failed: {exc!r}") from exc
        finally:
            self.metrics.rm_upstream_latency.labels(self.name).observe(time.perf_counter() - started)
        return self._scores(n, response, len(batch))

    def _scores(self, n: int, response: httpx.Response, expected: int) -> list[float]:
        where = self.urls[n]
        if response.status_code == 503:
            self.metrics.rm_upstream_errors.labels("status_5xx").inc()
            raise _Retryable(Unavailable(f"reward-model server {where} is unavailable (503)"))
        if response.status_code != 200:
            kind = "status_5xx" if response.status_code >= 500 else "status_4xx"
            self.metrics.rm_upstream_errors.labels(kind).inc()
            raise BadGateway(f"reward-model server {where} answered {response.status_code}: {response.text[:300]}")
        try:
            data: list[dict[str, Any]] = response.json()["data"]
            by_index = {int(d["index"]): float(d["probs"][0]) for d in data}
            scores = [by_index[i] for i in range(expected)]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self.metrics.rm_upstream_errors.labels("bad_response").inc()
            raise BadGateway(f"reward-model server {where} answered an unexpected body") from exc
        return scores

    async def max_model_len(self) -> int | None:
        """The context length vLLM serves with (its --max-model-len), from the first server that answers."""
        for client in self._clients:
            try:
                response = await client.get("/v1/models", timeout=5.0)
                for card in response.json().get("data", []):
                    if card.get("id") == self.model and card.get("max_model_len"):
                        return int(card["max_model_len"])
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
        return None

    def health(self) -> tuple[bool, dict[str, object]]:
        # Readiness is not gated on vLLM: test rewards still work while it is down, and model rewards say 503.
        return True, {"rm_backend": self.name, "rm_servers": len(self.urls), "rm_last_error": self._last_error}

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients))


class InProcessBackend:
    name = "hf"

    def __init__(self, scorer: Any, metrics: Metrics) -> None:
        self._scorer = scorer  # models.hf_backend.HfScorer; typed loosely so torch stays an optional import
        self.metrics = metrics
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="acecoder-rm")

    async def score(self, batch: Sequence[Sequence[int]]) -> list[float]:
        started = time.perf_counter()
        try:
            scores: list[float] = await asyncio.get_running_loop().run_in_executor(
                self._thread, self._scorer.score, batch)
            return scores
        except (RuntimeError, ValueError) as exc:  # torch's errors (out of memory, bad shapes) are RuntimeErrors
            self.metrics.rm_upstream_errors.labels("in_process").inc()
            raise BadGateway(f"the in-process reward model failed: {exc}") from exc
        finally:
            self.metrics.rm_upstream_latency.labels(self.name).observe(time.perf_counter() - started)

    def health(self) -> tuple[bool, dict[str, object]]:
        return True, {"rm_backend": self.name, "rm_device": str(self._scorer.device)}

    async def aclose(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
