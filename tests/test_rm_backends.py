"""The vLLM backend's failure handling, against the real vLLM server plus two misbehaving upstreams (raw
sockets that drop the connection or answer 500): which failures are retried on the next server, and which
become 502/503/504."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from acecoder_reward.service.errors import BadGateway, Unavailable
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.rm_backends import VllmBackend
from loadtest.vllm_process import VllmServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RawUpstream:
    """Accepts connections and, per request, either drops the connection or answers a fixed 500."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                if self.mode == "500":
                    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dropping() -> Iterator[RawUpstream]:
    upstream = RawUpstream("drop")
    yield upstream
    upstream.close()


@pytest.fixture
def failing() -> Iterator[RawUpstream]:
    upstream = RawUpstream("500")
    yield upstream
    upstream.close()


def _backend(urls: list[str], model: str, retries: int = 2) -> tuple[VllmBackend, Metrics]:
    metrics = Metrics()
    return VllmBackend(urls, model, timeout_s=30, retries=retries, metrics=metrics), metrics


async def test_a_dropped_connection_is_retried_on_the_next_server(vllm_server: VllmServer,
                                                                  dropping: RawUpstream) -> None:
    backend, metrics = _backend([dropping.url, vllm_server.url], vllm_server.served_model)
    scores = await backend.score([[1, 2, 3, 4], [5, 6]])
    assert len(scores) == 2 and dropping.requests == 1
    assert metrics.rm_upstream_errors.labels("dropped")._value.get() == 1
    await backend.aclose()


async def test_a_server_error_is_a_502_and_not_retried(vllm_server: VllmServer, failing: RawUpstream) -> None:
    backend, metrics = _backend([failing.url, vllm_server.url], vllm_server.served_model)
    with pytest.raises(BadGateway, match="answered 500"):
        await backend.score([[1, 2, 3]])
    assert failing.requests == 1 and metrics.rm_upstream_errors.labels("status_5xx")._value.get() == 1
    await backend.aclose()


async def test_no_server_answering_is_a_503_after_the_retries(dropping: RawUpstream) -> None:
    backend, _ = _backend([dropping.url], "m", retries=2)
    with pytest.raises(Unavailable, match="dropped the connection"):
        await backend.score([[1]])
    assert dropping.requests == 3
    await backend.aclose()


async def test_max_model_len_is_read_from_the_server(vllm_server: VllmServer) -> None:
    backend, _ = _backend([vllm_server.url], vllm_server.served_model)
    assert await backend.max_model_len() == vllm_server.max_model_len
    await backend.aclose()
