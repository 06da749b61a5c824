"""Test tiers: unit tests import modules directly; API tests talk to one real gateway, started once per
session as a subprocess (`acecoder-reward serve`) and awaited on /health, like a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gateway(tmp: Path, env_overrides: dict[str, str] | None = None, wait: bool = True) -> Gateway:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACECODER_")}
    env.update({"ACECODER_PORT": str(port), "ACECODER_LOG_LEVEL": "warning", "ACECODER_SECRET_TOKEN": "s3cret-canary"})
    env.update(env_overrides or {})
    log_path = tmp / f"gateway-{port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=REPO, env=env,
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, log_path)
    if wait:
        wait_healthy(gateway)
    return gateway


def wait_healthy(gateway: Gateway, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gateway.proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {gateway.log()}")
        try:
            if httpx.get(gateway.url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway not healthy in {timeout_s} s: {gateway.log()}")


def stop_gateway(gateway: Gateway) -> None:
    gateway.proc.terminate()
    try:
        gateway.proc.wait(15)
    except subprocess.TimeoutExpired:
        gateway.proc.kill()
        gateway.proc.wait()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gateway"))
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
