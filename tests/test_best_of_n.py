"""Best-of-N: the ranking rule, `POST /v1/best-of-n` over the real gateway (tests only, and with the in-process
reward model), and the `best-of-n` and `score` commands on the shipped HumanEval examples, through a running
service and in process."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from acecoder_reward.service.best_of_n import rank
from loadtest.humaneval_data import Problem
from tests.conftest import REPO, Gateway

EXAMPLES = REPO / "examples"


def test_ranking_rules() -> None:
    rates, scores = [0.5, 1.0, 1.0, 0.0], [9.0, -1.0, 2.0, 5.0]
    assert rank("tests", rates, scores) == [1, 2, 0, 3]  # equal pass rates keep their order
    assert rank("tests_then_model", rates, scores) == [2, 1, 0, 3]  # the score breaks the tie
    assert rank("model", None, scores) == [0, 3, 2, 1]


def _wrong(p: Problem) -> str:
    return f"def {p.entry_point}(*args):\n    return None\n"


def test_best_of_n_by_tests(gateway: Gateway, humaneval_subset: list[Problem]) -> None:
    p = humaneval_subset[5]
    body = {"question": p.prompt, "candidates": [_wrong(p), "no code", p.solution, _wrong(p)], "tests": p.tests}
    answer = httpx.post(gateway.url + "/v1/best-of-n", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["rank_by"] == "tests" and result["chosen"] == 2 and result["ranking"][0] == 2
    assert result["pass_rates"][2] == 1.0 and result["scores"] is None
    assert [i["tests"]["status"] for i in result["items"]][1] == "no_code"


@pytest.mark.parametrize(("body", "field"), [
    ({"question": "q", "candidates": []}, "candidates"),
    ({"question": "q", "candidates": ["x"], "rank_by": "tests"}, "tests"),
    ({"question": "q", "candidates": ["x"]}, "rank_by"),  # no tests -> by model, and this server has none
    ({"question": "q", "candidates": ["x"], "tests": ["assert 1", "y" * 30_000]}, "tests.1"),
])
def test_bad_best_of_n_requests_name_the_field(gateway: Gateway, body: dict, field: str) -> None:
    answer = httpx.post(gateway.url + "/v1/best-of-n", json=body, timeout=30)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


def test_best_of_n_with_the_model_breaking_ties(hf_dataset_gateway: Gateway, humaneval_subset: list[Problem]) -> None:
    p = humaneval_subset[6]
    variants = [p.solution, p.solution + "\n# a comment\n", p.solution + "\n\n", _wrong(p)]
    result = httpx.post(hf_dataset_gateway.url + "/v1/best-of-n", timeout=60,
                        json={"question": p.prompt, "candidates": variants, "tests": p.tests}).json()
    assert result["rank_by"] == "tests_then_model"
    correct = [0, 1, 2]
    best = max(correct, key=lambda i: (result["scores"][i], -i))
    assert result["chosen"] == best and result["ranking"][-1] == 3
    by_model = httpx.post(hf_dataset_gateway.url + "/v1/best-of-n", timeout=60,
                          json={"question": p.prompt, "candidates": variants}).json()
    assert by_model["rank_by"] == "model" and by_model["pass_rates"] is None
    assert by_model["chosen"] == max(range(4), key=lambda i: (by_model["scores"][i], -i))


def _subset(name: str, rows: int, tmp_path: Path) -> Path:
    with gzip.open(EXAMPLES / name, "rt") as f:
        lines = [next(f) for _ in range(rows)]
    path = tmp_path / name.removesuffix(".gz")
    path.write_text("".join(lines))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acecoder_reward.service.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})


def test_examples_are_built_from_humaneval() -> None:
    import ast

    from loadtest.humaneval_data import load_problems

    with gzip.open(EXAMPLES / "humaneval_best_of_n.jsonl.gz", "rt") as f:
        rows = {r["id"]: r for r in map(json.loads, f)}
    problems = load_problems()
    assert set(rows) == {p.task_id for p in problems}
    for p in problems:
        row = rows[p.task_id]
        assert row["tests"] == p.tests and row["question"] == p.prompt
        assert row["candidates"].count(p.solution) == 1 and len(row["candidates"]) >= 2
        assert all(f"def {p.entry_point}(" in c and ast.parse(c) for c in row["candidates"])
    assert sum(rows[p.task_id]["candidates"][0] == p.solution for p in problems) < 100  # shuffled


def test_best_of_n_command_through_the_service_with_plot(gateway: Gateway, tmp_path: Path) -> None:
    data = _subset("humaneval_best_of_n.jsonl.gz", 12, tmp_path)
    out, plot = tmp_path / "bon.jsonl", tmp_path / "bon.png"
    result = _cli("best-of-n", str(data), "--url", gateway.url, "--out", str(out), "--plot", str(plot))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and all(r["rank_by"] == "tests" for r in rows)
    assert all(r["chosen_passes"] for r in rows)  # every problem has its canonical solution among the candidates
    assert "selected candidate passes: 12/12 (100.0%)" in result.stdout
    assert "candidate/s" in result.stderr  # the progress bar shows throughput
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_score_command_in_process(tmp_path: Path) -> None:
    data = _subset("humaneval_items.jsonl.gz", 16, tmp_path)
    out = tmp_path / "scores.jsonl"
    result = _cli("score", str(data), "--out", str(out), "--tests-reward", "binary", "--batch", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    source = [json.loads(line) for line in data.read_text().splitlines()]
    assert [r["id"] for r in rows] == [s["id"] for s in source]
    assert 0 < sum(r["reward"] for r in rows) < 16 and {r["reward"] for r in rows} <= {0.0, 1.0}
    assert "items: 16" in result.stdout and "item/s" in result.stderr


def test_score_command_through_the_service(gateway: Gateway, tmp_path: Path) -> None:
    data = _subset("humaneval_items.jsonl.gz", 10, tmp_path)
    result = _cli("score", str(data), "--url", gateway.url, "--tests-reward", "binary")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 10 and {r["reward"] for r in rows} <= {0.0, 1.0} and "items: 10" in result.stdout


def test_best_of_n_command_in_process(tmp_path: Path) -> None:
    data = _subset("humaneval_best_of_n.jsonl.gz", 6, tmp_path)
    out = tmp_path / "bon.jsonl"
    result = _cli("best-of-n", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "selected candidate passes: 6/6" in result.stdout
    assert len(out.read_text().splitlines()) == 6
