"""Runs the gateway as a user does (`python -m service.cli serve` in a subprocess) and waits on /health.

Shared by the test suite and the benchmarks, so both exercise the real entry point the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


class GatewayFailed(RuntimeError):
    """The gateway exited or never became healthy; the message carries its log."""


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen[bytes] | None  # None: an external gateway (given by URL), not ours to stop
    log_path: Path | None

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gateway(log_dir: Path, env_overrides: dict[str, str] | None = None, keep: tuple[str, ...] = (),
                  wait: bool = True) -> Gateway:
    """Starts a gateway on a free port. Inherited ACECODER_* settings are dropped (except `keep`), so what
    runs is the documented defaults plus `env_overrides`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACECODER_") or k in keep}
    env.update({"ACECODER_PORT": str(port), "ACECODER_LOG_LEVEL": "warning", **(env_overrides or {})})
    log_path = log_dir / f"gateway-{port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "acecoder_reward.service.cli", "serve"], cwd=REPO, env=env,
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, log_path)
    if wait:
        try:
            wait_healthy(gateway)
        except BaseException:
            stop_gateway(gateway)
            raise
    return gateway


def die_with_parent() -> None:
    """A gateway started by a test run or benchmark must not outlive it when that run is killed."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def wait_healthy(gateway: Gateway, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gateway.proc is not None and gateway.proc.poll() is not None:
            raise GatewayFailed(f"gateway exited: {gateway.log()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(gateway.url + "/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise GatewayFailed(f"gateway not healthy in {timeout_s} s: {gateway.log()}")


def stop_gateway(gateway: Gateway) -> None:
    if gateway.proc is None:
        return
    gateway.proc.terminate()
    try:
        gateway.proc.wait(15)
    except subprocess.TimeoutExpired:
        gateway.proc.kill()
        gateway.proc.wait()
