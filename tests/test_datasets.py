"""Dataset rows as they come: each format's reader on small rows written here (JSONL, gzip and Parquet files),
`auto` detection, LiveCodeBench's compressed private tests and a hostile pickle in their place; then the rows
scored end to end (the `score` command in process and through the gateway), verl's ground truths, TRL's
rows without tests and OpenRLHF labels and dataset files in the input/output shapes."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import pickle
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from acecoder_reward_client import Item
from acecoder_reward_client import trl as trl_rewards
from acecoder_reward_client import verl as verl_rewards
from acecoder_reward_client._shared import read_tests

from acecoder_reward.service import datasets, protocol
from acecoder_reward.service.datasets import DatasetError, Problem
from acecoder_reward.service.openrlhf import OpenRLHFAdapter, label_problem, load_dataset
from acecoder_reward.service.settings import Settings
from tests.conftest import REPO, Gateway

DOUBLE = "n = int(input())\nprint(n * 2)\n"
TRIPLE = "n = int(input())\nprint(n * 3)\n"
ADD = "def add(a, b):\n    return a + b\n"
DOUBLE_IO = {"inputs": ["3\n", "5\n"], "outputs": ["6\n", "10\n"]}


def _lcb_pack(text: str) -> str:
    """The "lite" release's private tests: base64 of zlib of a pickle of the JSON text."""
    return base64.b64encode(zlib.compress(pickle.dumps(text))).decode()


ROWS: dict[str, dict[str, Any]] = {
    "acecode": {"id": "a1", "question": "Add.", "test_cases": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
                "inferences": [{"model_name": "m", "completion": ADD}, {"model_name": "m", "completion": "pass"}]},
    "apps": {"problem_id": 7, "question": "Double n.", "input_output": json.dumps(DOUBLE_IO),
             "solutions": json.dumps([DOUBLE, TRIPLE]), "starter_code": "", "difficulty": "introductory"},
    "codecontests": {"name": "1_double", "description": "Double n.",
                     "public_tests": {"input": ["3\n"], "output": ["6\n"]},
                     "private_tests": {"input": ["5\n"], "output": ["10\n"]},
                     "generated_tests": {"input": ["-1\n"], "output": ["-2\n"]},
                     "solutions": {"language": [2, 3, 3], "solution": ["print input()*2", DOUBLE, TRIPLE]}},
    "livecodebench": {"question_id": "lc1", "question_content": "Add two numbers.",
                      "public_test_cases": json.dumps([{"input": "1\n2", "output": "3", "testtype": "functional"}]),
                      "private_test_cases": _lcb_pack(json.dumps([{"input": "5\n-5", "output": "0",
                                                                   "testtype": "functional"}])),
                      "metadata": json.dumps({"func_name": "add"}),
                      "response": "class Solution:\n    def add(self, a: int, b: int) -> int:\n        return a + b\n"},
    "humaneval": {"task_id": "HumanEval/0", "prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n",
                  "entry_point": "add", "canonical_solution": "    return a + b\n",
                  "test": "METADATA = {}\n\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n"
                          "    assert candidate(2, 2) == 4\n    assert True\n"},
    "mbpp": {"task_id": 11, "text": "Square root.", "code": "import math\ndef root(x):\n    return math.sqrt(x)\n",
             "test_list": ["assert isclose(root(4), 2.0)"], "test_imports": ["from math import isclose"],
             "test_setup_code": ""},
    "items": {"id": "i1", "response": DOUBLE, "tests": DOUBLE_IO, "compare": "lines"},
}


# --- reading files -------------------------------------------------------------------------------------------------


def _write(rows: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".parquet":  # one schema for all rows: a column a row lacks is null there
        columns = list(dict.fromkeys(k for r in rows for k in r))
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows]), path)
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "wt", encoding="utf-8") as f:  # type: ignore[operator]
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz", "rows.parquet"])
@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_each_format_reads_the_same_from_jsonl_gzip_and_parquet(tmp_path: Path, fmt: str, name: str) -> None:
    (row,) = datasets.read_rows(_write([ROWS[fmt]], tmp_path / name))
    assert datasets.detect(row) == fmt
    assert datasets.problem_of(row) == datasets.problem_of(row, fmt) == datasets.problem_of(ROWS[fmt], fmt)


def test_the_gzip_file_is_told_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    path = _write([ROWS["apps"]], tmp_path / "rows.jsonl.gz").rename(tmp_path / "rows.jsonl")
    assert datasets.read_rows(path) == [ROWS["apps"]]


def test_what_each_format_maps_to() -> None:
    problems = {fmt: datasets.problem_of(row) for fmt, row in ROWS.items()}
    assert problems["acecode"] == Problem("Add.", ROWS["acecode"]["test_cases"])
    assert problems["apps"] == Problem("Double n.", DOUBLE_IO)
    assert problems["codecontests"] == Problem("Double n.", {"input": ["3\n", "5\n", "-1\n"],
                                                             "output": ["6\n", "10\n", "-2\n"]})
    assert problems["livecodebench"] == Problem("Add two numbers.", [
        {"input": "1\n2", "output": "3", "testtype": "functional"},
        {"input": "5\n-5", "output": "0", "testtype": "functional"}], fn_name="add")
    assert problems["humaneval"] == Problem(ROWS["humaneval"]["prompt"], ["assert add(1, 2) == 3",
                                                                         "assert add(2, 2) == 4"])
    assert problems["mbpp"] == Problem("Square root.", ["assert isclose(root(4), 2.0)"],
                                       test_imports=["from math import isclose"])
    assert problems["items"] == Problem(None, DOUBLE_IO, compare="lines")
    assert problems["mbpp"].item("x") == {"response": "x", "question": "Square root.",
                                          "tests": ["assert isclose(root(4), 2.0)"],
                                          "test_imports": ["from math import isclose"]}
    assert problems["livecodebench"].item("x", compare="exact")["compare"] == "exact"
    assert "compare" not in problems["acecode"].item("x", compare="exact")  # asserts compare nothing


def test_responses_come_from_the_named_column() -> None:
    assert datasets.responses_of(ROWS["apps"], "auto", "solutions") == ([DOUBLE, TRIPLE], True)
    assert datasets.responses_of(ROWS["codecontests"], "auto", "solutions") == ([DOUBLE, TRIPLE], True)  # Python 3
    assert datasets.responses_of(ROWS["acecode"], "auto", "inferences") == ([ADD, "pass"], True)
    he = ROWS["humaneval"]
    assert datasets.responses_of(he, "auto", "canonical_solution") == ([he["prompt"] + "    return a + b\n"], False)
    assert datasets.responses_of(ROWS["items"], "auto", "response") == ([DOUBLE], False)
    with pytest.raises(DatasetError, match="--response-field"):
        datasets.responses_of(ROWS["apps"], "auto", "response")


def test_auto_refuses_a_row_it_does_not_know_and_bad_rows_name_the_field() -> None:
    with pytest.raises(DatasetError, match="--format"):
        datasets.detect({"prompt": "p", "answer": "42"})
    with pytest.raises(DatasetError, match="input_output: not JSON"):
        datasets.problem_of({"input_output": "{oops"})
    with pytest.raises(DatasetError, match="tests: inputs and outputs"):
        datasets.problem_of({"input_output": json.dumps({"inputs": ["1"], "outputs": []})})
    with pytest.raises(DatasetError, match="tests: 0: a functional test needs"):
        datasets.problem_of({**ROWS["livecodebench"], "metadata": "{}"})
    assert datasets.problem_of({"input_output": "", "question": "q"}).tests == []  # APPS rows without tests


def test_humaneval_checks_with_more_than_asserts_stay_whole() -> None:
    source = "import math\n\ndef check(f):\n    assert math.isclose(f(1, 2), 3)\n"
    assert datasets.split_check(source, "add") == ["import math\nassert math.isclose(add(1, 2), 3)"]
    looped = "def check(candidate):\n    for i in range(3):\n        assert candidate(i, 0) == i\n"
    assert datasets.split_check(looped, "add") == [looped.rstrip() + "\n\ncheck(add)\n"]


# --- LiveCodeBench's pickled private tests -------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol_version", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path, protocol_version: int) -> None:
    marker = tmp_path / "pwned"
    packed = base64.b64encode(zlib.compress(pickle.dumps(_Payload(marker), protocol=protocol_version))).decode()
    with pytest.raises(DatasetError, match=r"refused a pickle naming (posix|os)\.system"):
        datasets.problem_of({**ROWS["livecodebench"], "private_test_cases": packed})
    assert not marker.exists()


@pytest.mark.parametrize(("payload", "message"), [
    (pickle.dumps([{"input": "1\n2", "output": "3"}]), "holds a list, not a string"),
    (pickle.dumps(b"[]"), "holds a bytes, not a string"),
    (b"not a pickle", "not a pickled string"),
])
def test_only_a_pickled_string_is_read(payload: bytes, message: str) -> None:
    packed = base64.b64encode(zlib.compress(payload)).decode()
    with pytest.raises(DatasetError, match=message):
        datasets.lcb_tests(packed)


def test_private_tests_that_are_neither_json_nor_packed_are_named() -> None:
    with pytest.raises(DatasetError, match="private_test_cases: neither JSON nor base64"):
        datasets.lcb_tests("!!definitely not base64!!")
    assert datasets.lcb_tests(_lcb_pack("[]")) == []


# --- the score command ---------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acecoder_reward.service.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})


def _results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_score_apps_rows_in_process(tmp_path: Path) -> None:
    called = {"problem_id": 8, "question": "Add.", "solutions": json.dumps([ADD]),
              "input_output": json.dumps({"inputs": [[1, 2], [3, 4]], "outputs": [[3], [7]], "fn_name": "add"})}
    data = _write([ROWS["apps"], called], tmp_path / "apps.jsonl.gz")
    out = tmp_path / "scores.jsonl"
    result = _cli("score", str(data), "--format", "apps", "--response-field", "solutions", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(r["id"], r["response_index"], r["reward"]) for r in _results(out)] == [(7, 0, 1.0), (7, 1, 0.0),
                                                                                     (8, 0, 1.0)]
    assert "items: 3" in result.stdout and "all tests passed: 2/3" in result.stdout


def test_score_mixed_parquet_rows_through_the_gateway(gateway: Gateway, tmp_path: Path) -> None:
    rows = [ROWS["livecodebench"], {**ROWS["livecodebench"], "question_id": "lc2", "response": "pass"}]
    data = _write(rows, tmp_path / "lcb.parquet")
    out = tmp_path / "scores.jsonl"
    result = _cli("score", str(data), "--url", gateway.url, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(r["id"], r["reward"]) for r in _results(out)] == [("lc1", 1.0), ("lc2", 0.0)]


def test_score_names_the_row_it_cannot_read(tmp_path: Path) -> None:
    data = _write([ROWS["apps"], {"input_output": "{oops", "response": DOUBLE}], tmp_path / "bad.jsonl")
    result = _cli("score", str(data), "--format", "apps", "--response-field", "response")
    assert result.returncode != 0 and "row 1: response: no such column" in result.stderr  # APPS's are `solutions`
    result = _cli("score", str(data), "--format", "apps", "--response-field", "solutions")
    assert result.returncode != 0 and "row 2: input_output: not JSON" in result.stderr


# --- trainers ------------------------------------------------------------------------------------------------------


def test_client_items_carry_every_test_shape() -> None:
    item = Item(response="r", tests=json.dumps(DOUBLE_IO), fn_name="f", compare="lines", test_imports=["import m"])
    assert item.to_json() == {"response": "r", "tests": json.dumps(DOUBLE_IO), "fn_name": "f", "compare": "lines",
                              "test_imports": ["import m"]}
    protocol.RewardItem.model_validate(Item(response="r", tests=DOUBLE_IO).to_json())
    assert read_tests(json.dumps(DOUBLE_IO)) == {"tests": DOUBLE_IO}
    assert read_tests(["assert f()"]) == read_tests('["assert f()"]') == read_tests("assert f()")
    lcb = [{"input": "1", "output": "2", "testtype": "stdin"}]
    assert read_tests({"tests": lcb, "fn_name": "g", "question": "q"}) == {"tests": lcb, "fn_name": "g"}
    empty: list[Any] = [None, "", [], {"inputs": [], "outputs": []}, "  "]
    assert [read_tests(v) for v in empty] == [None] * 5
    with pytest.raises(ValueError, match="cannot read tests"):
        read_tests([1, 2])


def test_verl_ground_truth_shapes_give_score_dicts(gateway: Gateway) -> None:
    answer = verl_rewards.compute_score("codecontests", f"```python\n{DOUBLE}```", json.dumps(DOUBLE_IO), None,
                                        url=gateway.url)
    assert answer == {"score": 1.0, "pass_rate": 1.0, "status": "ok", "judged_in_sandbox": 0}
    truths = [DOUBLE_IO, ["assert add(1, 2) == 3"], json.dumps(["assert add(1, 2) == 4"]),
              json.dumps({"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"})]
    batch = verl_rewards.compute_score_batch(["x"] * 4, [TRIPLE, ADD, ADD, ADD], truths, [None] * 4, url=gateway.url,
                                             tests_reward="pass_rate")
    assert [(b["score"], b["status"]) for b in batch] == [(0.0, "ok"), (1.0, "ok"), (0.0, "ok"), (1.0, "ok")]
    assert all(set(b) == {"score", "pass_rate", "status", "judged_in_sandbox"} for b in batch)


def test_trl_rows_without_tests_get_none(gateway: Gateway) -> None:
    completions = [ADD, "the answer is 42", DOUBLE]
    tests = [["assert add(1, 2) == 3"], None, json.dumps(DOUBLE_IO)]
    assert trl_rewards.tests_reward(gateway.url)(["p"] * 3, completions, tests=tests) == [1.0, None, 1.0]
    afunc = trl_rewards.async_tests_reward(gateway.url)
    assert asyncio.run(afunc(["p"] * 3, completions, tests=["", [], None])) == [None, None, None]
    unreachable = trl_rewards.tests_reward("http://127.0.0.1:9")  # an all-math batch sends nothing
    assert unreachable(["p"], ["42"], tests=[None]) == [None]


# --- OpenRLHF ------------------------------------------------------------------------------------------------------


def _openrlhf(url: str, response: str, label: str) -> httpx.Response:
    prompt = "<|im_start|>user\nDouble n.<|im_end|>\n<|im_start|>assistant\n"
    return httpx.post(url + "/get_reward", json={"query": [prompt + response], "prompts": [prompt],
                                                 "labels": [label], "tests_reward": "pass_rate"}, timeout=60)


def test_get_reward_with_input_output_labels(gateway: Gateway) -> None:
    apps = json.dumps(DOUBLE_IO)
    wrapped = json.dumps({"tests": ROWS["livecodebench"]["public_test_cases"], "fn_name": "add", "question": "q"})
    for response, label, expected in [(DOUBLE, apps, 1.0), (TRIPLE, apps, 0.0),
                                      (ROWS["livecodebench"]["response"], wrapped, 1.0)]:
        answer = _openrlhf(gateway.url, response, label)
        assert answer.status_code == 200, answer.text
        assert answer.json()["rewards"] == [expected]
    bad = _openrlhf(gateway.url, DOUBLE, json.dumps({"tests": DOUBLE_IO, "compare": "fuzzy"}))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "labels.0", bad.text


def test_openrlhf_dataset_files_and_labels_of_any_format(tmp_path: Path) -> None:
    path = _write([ROWS["apps"], ROWS["livecodebench"], ROWS["acecode"]], tmp_path / "mixed.parquet")
    dataset = load_dataset(path)
    assert set(dataset) == {"7", "lc1", "a1"} and dataset["lc1"].fn_name == "add"
    adapter = OpenRLHFAdapter(SimpleNamespace(model=None), Settings(), dataset)  # type: ignore[arg-type]
    body = protocol.OpenRLHFRequest(query=["<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nx"] * 2,
                                    labels=["lc1", json.dumps({"inputs": ["1"], "outputs": ["2"]})])
    items = adapter._reward_request(body).items
    assert items[0].fn_name == "add" and items[0].question == "Add two numbers." and len(items[0].tests) == 2
    assert items[1].tests == {"inputs": ["1"], "outputs": ["2"]} and items[1].question == "q"
    with pytest.raises(DatasetError):
        label_problem([1, 2])
    with pytest.raises(ValueError, match="row 1: a row needs an id"):
        load_dataset(_write([{"question": "q", "input_output": json.dumps(DOUBLE_IO)}], tmp_path / "noid.jsonl"))
