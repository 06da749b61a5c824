"""Queue mode as a user runs it: a real redis-server, `acecoder-reward worker` processes and a gateway pointed
at them. Shared by the test suite and the queue benchmark."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from loadtest.gateway_process import REPO, Gateway, die_with_parent, free_port, start_gateway

TEST_QUEUE_ENV = {  # fast failure detection, so fault tests take seconds
    "ACECODER_WORKER_HEARTBEAT_S": "0.25",
    "ACECODER_WORKER_HEARTBEAT_TTL_S": "1.5",
}
SLOW_LIMITS = {"test_timeout_s": 10, "program_timeout_s": 15}  # room for sleepers on a loaded machine


def sleeper(value: int, seconds: float) -> dict[str, object]:
    """An item that takes `seconds` and passes only with its own value: a mixed-up result would fail."""
    return {"response": f"import time\ndef f():\n    time.sleep({seconds})\n    return {value}\n",
            "tests": [f"assert f() == {value}"]}


class RedisServer:
    """A private redis-server (no persistence, password set) that a test may stop and restart."""

    def __init__(self, directory: Path, password: str = "queue-pw-canary") -> None:
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", self.password, "--dir", str(self.directory)],
            stdout=(self.directory / "redis.log").open("ab"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """SIGKILL: a crash, everything in memory lost."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass(frozen=True)
class WorkerStop:
    """How one worker's SIGTERM went."""

    name: str
    seconds: float  # from the signal to the exit
    returncode: int | None  # None: still running when the wait ran out, so it was SIGKILLed


@dataclass
class QueueStack:
    """A gateway and its workers on one key prefix."""

    redis_url: str
    prefix: str
    log_dir: Path
    env: dict[str, str]
    gateway: Gateway | None = None
    # Workers log at debug by default: a worker that hangs on its way out names the drain phase it hangs in.
    worker_log_level: str = "debug"
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _started: int = 0

    def base_env(self) -> dict[str, str]:
        return {"ACECODER_REDIS_URL": self.redis_url, "ACECODER_QUEUE_PREFIX": self.prefix, **TEST_QUEUE_ENV,
                **self.env}

    def start_gateway(self, wait: bool = True, **overrides: str) -> Gateway:
        self.gateway = start_gateway(self.log_dir, {**self.base_env(), **overrides}, wait=wait)
        return self.gateway

    def start(self, workers: int = 2, concurrency: int = 2) -> Gateway:
        """Workers, then the gateway; returns once the gateway counts every worker live."""
        for _ in range(workers):
            self.start_worker(concurrency)
        gateway = self.start_gateway()
        self.wait_workers(workers)
        return gateway

    def start_worker(self, concurrency: int = 2, **overrides: str) -> str:
        """Each worker gets its own uid range, as two workers sharing a host must."""
        self._started += 1
        name = f"{self.prefix}-w{self._started}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACECODER_")}
        env.update({**self.base_env(), "ACECODER_LOG_LEVEL": self.worker_log_level,
                    "ACECODER_SANDBOX_UID_BASE": str(300000 + 1000 * (self._started % 500)), **overrides})
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("wb")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "acecoder_reward.service.cli", "worker", "--concurrency", str(concurrency),
             "--name", name],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        return name

    def wait_workers(self, count: int, timeout_s: float = 60.0) -> None:
        """Until `count` workers beat and the gateway (if any) counts them."""
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.workers.items():
                if proc.poll() is not None and proc.returncode not in (0, -9, -15):
                    raise RuntimeError(f"worker {name} exited: {self.worker_log(name)}")
            beating = client.zcard(f"{self.prefix}:workers")
            if beating >= count and (self.gateway is None or self.gateway_workers() >= count):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{count} workers not live in {timeout_s} s")

    def gateway_workers(self) -> int:
        assert self.gateway is not None
        try:
            return int(httpx.get(self.gateway.url + "/health", timeout=2).json().get("workers", 0))
        except (httpx.TransportError, ValueError):
            return 0

    def worker_log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def worker_logs(self, tail_lines: int = 60) -> str:
        """The end of every worker's log, for a failure message."""
        parts = []
        for name in self.workers:
            lines = self.worker_log(name).splitlines()[-tail_lines:]
            parts.append(f"--- worker {name} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "\n".join(parts)

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.workers[name].send_signal(sig)

    def terminate_worker(self, name: str, wait_s: float) -> WorkerStop:
        """SIGTERM, then up to `wait_s` for the exit (SIGKILL after that); says how long it took."""
        proc = self.workers[name]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return WorkerStop(name, time.monotonic() - started, None)
        return WorkerStop(name, time.monotonic() - started, proc.returncode)

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.gateway is not None and self.gateway.proc is not None:
            self.gateway.proc.terminate()
            try:
                self.gateway.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.gateway.proc.kill()


@contextmanager
def private_queue_stack(work: Path, prefix: str, workers: int = 2, concurrency: int = 2,
                        env: dict[str, str] | None = None) -> Iterator[QueueStack]:
    """A redis-server of its own under `work`, a gateway and `workers` workers on it; all stopped on exit."""
    server = RedisServer(work / "redis")
    server.start()
    stack = QueueStack(server.url, prefix, work / "queue", env or {})
    try:
        stack.start(workers=workers, concurrency=concurrency)
        yield stack
    finally:
        stack.stop()
        server.stop()
