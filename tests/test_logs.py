"""Request ids and structured logs: the id a caller sends (or a fresh one) comes back in `X-Request-ID`, and in
JSON-log mode the gateway's access line and the queue worker's line for the job carry the same id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loadtest.queue_processes import RedisServer
from tests.conftest import Gateway, free_port

ITEM = {"response": "def f():\n    return 1", "tests": ["assert f() == 1"]}


def test_request_id_is_echoed_or_made(gateway: Gateway) -> None:
    given = httpx.post(gateway.url + "/v1/rewards", json={"items": [ITEM]}, headers={"X-Request-ID": "trace-42.a"})
    assert given.headers["X-Request-ID"] == "trace-42.a"
    for header in ({}, {"X-Request-ID": "has spaces"}, {"X-Request-ID": "x" * 200}):
        made = httpx.post(gateway.url + "/v1/rewards", json={"items": [ITEM]}, headers=header).headers["X-Request-ID"]
        assert len(made) == 32 and int(made, 16) >= 0
    assert httpx.post(gateway.url + "/v1/rewards", content=b"{").headers["X-Request-ID"]  # refusals have one too


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_logs_follow_a_request_from_gateway_to_worker(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ACECODER_REDIS_URL": redis.url,
           "ACECODER_PORT": str(port), "ACECODER_LOG_FORMAT": "json", "ACECODER_LOG_LEVEL": "debug"}
    logs = {name: tmp_path / f"{name}.log" for name in ("gateway", "worker")}
    procs = {name: subprocess.Popen([sys.executable, "-m", "acecoder_reward.service.cli", "serve" if name == "gateway" else "worker"],
                                    env=env, stdout=logs[name].open("wb"), stderr=subprocess.STDOUT)
             for name in logs}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if health.status_code == 200 and health.json().get("workers"):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, logs["gateway"].read_text()[-2000:]
            time.sleep(0.2)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/rewards", json={"items": [ITEM]},
                            headers={"X-Request-ID": "trace-from-trainer"}, timeout=60)
        assert answer.status_code == 200 and answer.json()["rewards"] == [1.0]
        time.sleep(0.5)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(45)
        redis.stop()
    gateway_lines, worker_lines = _json_lines(logs["gateway"]), _json_lines(logs["worker"])
    assert gateway_lines and worker_lines and all({"time", "level", "logger", "message"} <= set(line)
                                                  for line in gateway_lines + worker_lines)
    access = [line for line in gateway_lines if line["logger"] == "acecoder.access"]
    assert any(line["request_id"] == "trace-from-trainer" and "POST /v1/rewards 200" in line["message"]
               for line in access), access
    jobs = [line for line in worker_lines if line["request_id"] == "trace-from-trainer"]
    assert jobs and "1/1 tests passed" in jobs[0]["message"], worker_lines[-5:]
