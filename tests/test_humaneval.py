"""All 164 HumanEval canonical solutions pass every test through the API; broken variants fail exactly
the tests they should."""

from __future__ import annotations

import httpx
import pytest

from loadtest.humaneval_data import Problem, load_problems
from tests.conftest import score

PROBLEMS = load_problems()


def test_all_canonical_solutions_pass(client: httpx.Client) -> None:
    items = [{"response": p.solution, "tests": p.tests} for p in PROBLEMS]
    answer = client.post("/v1/rewards", json={"items": items, "tests_reward": "binary"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    failures = {p.task_id: r["tests"] for p, r in zip(PROBLEMS, body["items"]) if r["reward"] != 1.0}
    assert failures == {}
    # 1,106 single asserts, plus the 7 checks with loops unrolled at conversion into 427 more.
    assert sum(r["tests"]["total"] for r in body["items"]) == 1533
    assert [p.task_id for p, r in zip(PROBLEMS, body["items"]) if r["tests"]["judged_in_sandbox"]] == []


def test_a_helper_of_the_prompt_cannot_judge_its_own_answer(client: httpx.Client) -> None:
    """HumanEval/32 checks find_zero's answer with poly(), which the prompt defines, so the candidate's program
    holds it: a program whose poly() always says 0 passed its check in process. The conversion inlines poly."""
    p = _problem("HumanEval/32")
    cheat = p.prompt.replace("return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])", "return 0.0")
    assert cheat != p.prompt
    result = score(client, cheat + "    return 0.0\n", p.tests)
    assert result["tests"]["passed"] == 0 and result["tests"]["judged_in_sandbox"] == []


def _problem(task_id: str) -> Problem:
    return next(p for p in PROBLEMS if p.task_id == task_id)


def test_wrong_return_value_fails_exactly_the_affected_tests(client: httpx.Client) -> None:
    p = _problem("HumanEval/0")  # has_close_elements: 7 asserts, 4 expect True and 3 False
    result = score(client, p.prompt + "    return True\n", p.tests)
    expected = ["pass" if t.endswith("== True") else "fail" for t in p.tests]
    assert result["tests"]["outcomes"] == expected
    assert result["tests"]["status"] == "ok"
    assert result["reward"] == pytest.approx(expected.count("pass") / len(expected))


def test_exception_is_an_error_on_every_test(client: httpx.Client) -> None:
    p = _problem("HumanEval/2")
    result = score(client, p.prompt + "    raise ValueError('nope')\n", p.tests)
    assert result["tests"]["outcomes"] == ["error"] * len(p.tests)
    assert all(d.startswith("ValueError: nope") for d in result["tests"]["details"])
    assert result["reward"] == 0.0


def test_infinite_loop_times_out_each_test_and_only_those(client: httpx.Client) -> None:
    p = _problem("HumanEval/2")  # truncate_number
    code = p.prompt + "    if number > 100:\n        while True:\n            pass\n    return number % 1.0\n"
    result = score(client, code, p.tests, limits={"test_timeout_s": 0.5})
    assert result["tests"]["outcomes"] == ["pass", "pass", "timeout"]
    assert result["tests"]["status"] == "timeout"


def test_wrong_variant_with_type_confusion_fails(client: httpx.Client) -> None:
    p = _problem("HumanEval/0")
    result = score(client, p.prompt + "    return 1\n", p.tests)  # 1 == True holds in Python, as in the seed
    assert result["tests"]["outcomes"] == ["pass" if t.endswith("== True") else "fail" for t in p.tests]
