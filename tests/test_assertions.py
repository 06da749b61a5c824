"""Unit tests for sandbox_worker.assertions: how a test is split into holes, and the trusted evaluator."""

from __future__ import annotations

import ast
import time
from typing import Any

import pytest

# Imported as a module: pytest would try to collect the `Test*` names (TestPlan, TestExpressionError).
from acecoder_reward.sandbox_worker import assertions, trusted_scope
from acecoder_reward.sandbox_worker.plain_data import decode, encode

HoleFailed = assertions.HoleFailed
ExprError = assertions.TestExpressionError


def _split(source: str) -> assertions.TestPlan:
    """Plans `source` and checks it was split (not invalid, not judged in the sandbox)."""
    plan = assertions.plan_test(source)
    assert plan.invalid is None
    assert not plan.in_sandbox
    assert plan.outer is not None
    return plan


def _evaluate(source: str, *values: Any) -> bool:
    """Plans `source` and evaluates it with every hole succeeding with the given values."""
    return assertions.evaluate(_split(source), [(True, v) for v in values])


def _run_holes(plan: assertions.TestPlan, program: str) -> list[tuple[bool, Any]]:
    """What the sandbox does for a split test, minus the sandbox: eval each hole, ship it as plain data."""
    namespace: dict[str, Any] = {}
    exec(program, namespace)
    return [(True, decode(encode(eval(h, namespace)))) for h in plan.holes]


# --- plan_test: splitting ---------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "holes"), [
    ("assert f(3) == 5", ("f(3)",)),
    ("assert abs(f(1.5) - 0.5) < 1e-6", ("f(1.5)",)),
    ("assert math.isclose(f(2), 1.0, rel_tol=1e-9)", ("f(2)",)),
    ("assert f(1)", ("f(1)",)),
    ("assert not f(1)", ("f(1)",)),
    ("assert f(1) is None", ("f(1)",)),
    ("assert f(x)[0] == 1", ("f(x)",)),
    ("assert f(1) == 5, 'message'", ("f(1)",)),
    ("assert sorted(f([3, 1])) == [1, 3]", ("f([3, 1])",)),
    ("assert f(1) + f(2) == 3", ("f(1)", "f(2)")),
    ("assert f(1).upper() == 'A'", ("f(1).upper()",)),
    ("assert f('abc').startswith('cb')", ("f('abc')",)),
    ("import math\nassert f(1) == math.tau", ("f(1)",)),
    ("assert f(1) == 1\nassert f(2) == 2", ("f(1)", "f(2)")),
    ("assert all(a == b for a, b in zip(f(1), [1, 2]))", ("f(1)",)),
    ("assert sorted(f(1), key=lambda v: -v) == [2, 1]", ("f(1)",)),
    ("assert f(1) == 'abc'.upper()", ("f(1)",)),
    ("assert f(1).count(3) == 2", ("f(1).count(3)",)),
    ("assert Cipher(3).encode('abc') == 'def'", ("Cipher(3).encode('abc')",)),
    ("assert f(1).count(set()) == 0", ("f(1).count(set())",)),
    ("assert all(x in f(10) for x in [2, 3])", None),
    ("assert [f() for _ in range(3)] == [1, 2, 3]", None),
    ("assert sorted(g(), key=lambda v: f(v)) == [1]", None),
    ("assert any(x for x in [1] for y in f(2))", None),
    ("assert [x for x in f(3)] == [1]", ("f(3)",)),
])
def test_split_sends_only_candidate_calls_to_the_sandbox(source: str, holes: tuple[str, ...] | None) -> None:
    """Only the candidate-side sub-expressions become holes; the rest stays in the trusted outer expr. A hole
    Python would evaluate once per iteration or call (None) makes the test run whole in the sandbox."""
    if holes is None:
        assert assertions.plan_test(source).in_sandbox
    else:
        assert _split(source).holes == holes


@pytest.mark.parametrize(("source", "expected"), [
    ("assert f(3) == 5", "5"),
    ("assert abs(f(1.5) - 0.5) < 1e-6", "1e-06"),
    ("assert math.isclose(f(2), 1.0, rel_tol=1e-9)", "1.0"),
    ("assert f(1) == 'secret-answer'", "secret-answer"),
    ("assert f([1, 2]) == [987654, 123456]", "987654"),
])
def test_expected_value_never_reaches_a_hole(source: str, expected: str) -> None:
    """The expected value lives in the outer expression only: no hole source mentions it."""
    plan = _split(source)
    assert all(expected not in hole for hole in plan.holes)
    assert expected in ast.unparse(ast.parse(source))


@pytest.mark.parametrize("source", [
    "x = f(1)\nassert x == 2",
    "for x in range(3):\n    assert f(x) == x",
    "f(1)",
])
def test_non_single_assert_is_judged_whole_in_sandbox(source: str) -> None:
    """Anything other than one assert statement runs whole in the sandbox: the source is the one hole."""
    plan = assertions.plan_test(source)
    assert plan.in_sandbox
    assert plan.holes == (source,)
    assert plan.outer is None
    assert plan.invalid is None


@pytest.mark.parametrize("source", [
    "assert f(a == b)",
    "assert f(lambda v: v > 1) == 2",
    "assert sorted(reversed([2, 1])) == [1, 2]",
])
def test_hole_that_decides_or_reveals_makes_test_in_sandbox(source: str) -> None:
    """A hole holding a comparison/lambda (it would decide) or only constants (it would reveal) is refused."""
    plan = assertions.plan_test(source)
    assert plan.in_sandbox
    assert plan.holes == (source,)


@pytest.mark.parametrize("source", ["assert f(1) ==", "assert (", "def f(:\n  pass", "assert f(1) == 1 1"])
def test_unparsable_test_is_invalid(source: str) -> None:
    """A test that does not parse is marked invalid and sends nothing to the sandbox."""
    plan = assertions.plan_test(source)
    assert plan.invalid is not None and "does not parse" in plan.invalid
    assert plan.holes == ()
    assert not plan.in_sandbox


def test_call_of_builtins_only_is_judged_in_sandbox_never_by_the_judge() -> None:
    """`__import__('os').system(...)` uses no candidate name: it runs whole in the sandbox, never in the judge."""
    source = "assert __import__('os').system('echo hi') == 0"
    plan = assertions.plan_test(source)
    assert plan.in_sandbox
    assert plan.outer is None
    assert plan.holes == (source,)


@pytest.mark.parametrize("source", [
    "assert f(1) == open('/etc/passwd').read()",
    "assert f(1) == eval('1')",
    "assert f(1) == getattr(math, 'pi')",
    "assert f(1) == math.__dict__['pi']",
    "assert f(1) == (lambda: 1)()",
    "assert f(1) == [].__class__",
])
def test_outer_expression_only_calls_whitelisted_functions(source: str) -> None:
    """A test that would need anything beyond the trusted whitelist is refused wholesale: it runs in the sandbox."""
    plan = assertions.plan_test(source)
    assert plan.in_sandbox
    assert plan.outer is None


def test_outer_calls_resolve_to_the_judges_own_objects() -> None:
    """Every call left in a split test's outer tree resolves, through the test's scope, to a trusted object."""
    plan = _split("import math, operator\nfrom math import isclose\n"
                  "assert isclose(f(1), math.sqrt(2)) and operator.eq(sorted(f(2)), [1]) and f(3).count(1) == 1")
    trusted = set(map(id, trusted_scope.SAFE_FUNCS.values())) | {
        id(v) for m in trusted_scope.STDLIB_MODULES.values() for v in m.attrs.values()}
    for node in ast.walk(plan.outer):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert id(plan.scope.lookup(node.func.id)) in trusted, ast.unparse(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            assert isinstance(owner, assertions.Hole) or id(
                plan.scope.lookup(owner.id).attrs[node.func.attr]) in trusted, ast.unparse(node)


# --- evaluate ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "value", "expected"), [
    ("assert f(3) == 5", 5, True),
    ("assert f(3) == 5", 6, False),
    ("assert f(3) == 5", 5.0, True),
    ("assert f(3) == 5", "5", False),
    ("assert abs(f(1.5) - 0.5) < 1e-6", 0.5000000001, True),
    ("assert abs(f(1.5) - 0.5) < 1e-6", 0.51, False),
    ("assert math.isclose(f(2), 1.0, rel_tol=1e-9)", 1.0 + 1e-12, True),
    ("assert math.isclose(f(2), 1.0, rel_tol=1e-9)", 1.1, False),
    ("assert f(1)", True, True),
    ("assert f(1)", [], False),
    ("assert not f(1)", 0, True),
    ("assert not f(1)", "x", False),
    ("assert f(1) is None", None, True),
    ("assert f(1) is None", 0, False),
    ("assert f(x)[0] == 1", [1, 2], True),
    ("assert f(x)[0] == 1", (2, 1), False),
    ("assert f(1) == {1: 'a'}", {1: "a"}, True),
    ("assert sorted(f(1)) == [1, 2, 3]", {3, 2, 1}, True),
    ("assert f(1) == 2 ** 10", 1024, True),
    ("assert f(1) in (1, 2)", 2, True),
    ("assert 0 < f(1) <= 3", 4, False),
])
def test_evaluate_passes_and_fails_like_python(source: str, value: Any, expected: bool) -> None:
    """The outer expression gives the same verdict Python would on the same hole values."""
    assert _evaluate(source, value) is expected


@pytest.mark.parametrize(("source", "value", "expected"), [
    ("assert f(1) == [1, 2]", (1, 2), False),
    ("assert f(1) == (1, 2)", [1, 2], False),
    ("assert f(1) == [1, 2]", [1, 2], True),
    ("assert f(1) == {1, 2}", frozenset({1, 2}), True),
    ("assert f(1) == 'ab'", b"ab", False),
    ("assert f(1) == 1", True, True),
])
def test_evaluate_uses_exact_equality_on_decoded_values(source: str, value: Any, expected: bool) -> None:
    """After the plain-data trip, list vs tuple stay unequal, exactly as `==` in Python says."""
    assert _evaluate(source, decode(encode(value))) is expected


def test_hole_error_raises_hole_failed() -> None:
    """A hole that raised in the sandbox surfaces as HoleFailed carrying the sandbox's message."""
    plan = _split("assert f(1) == 5")
    with pytest.raises(HoleFailed) as info:
        assertions.evaluate(plan, [(False, "ZeroDivisionError: division by zero")])
    assert info.value.message == "ZeroDivisionError: division by zero"


def test_short_circuit_skips_failed_hole_like_python() -> None:
    """`a or b` does not need b when a is true, so a failed second hole does not matter."""
    plan = _split("assert f(1) == 1 or f(2) == 2")
    assert assertions.evaluate(plan, [(True, 1), (False, "ValueError: boom")]) is True
    with pytest.raises(HoleFailed):
        assertions.evaluate(plan, [(True, 0), (False, "ValueError: boom")])


@pytest.mark.parametrize(("source", "value"), [
    ("assert f(1) < 3", None),
    ("assert f(1) + 1 == 2", "1"),
    ("assert f(1)[5] == 1", [1]),
    ("assert len(f(1)) == 1", 5),
    ("assert f(1) / 0 == 1", 1),
])
def test_outer_type_error_raises_test_expression_error(source: str, value: Any) -> None:
    """An exception in the trusted outer expression (e.g. `None < 3`) is a TestExpressionError."""
    with pytest.raises(ExprError):
        _evaluate(source, value)


def test_opaque_hole_cannot_be_passed_to_a_builtin() -> None:
    """A non-plain result fed to a whitelisted function is refused rather than guessed at."""
    opaque = decode({"x": ["mod.Thing", None]})
    with pytest.raises(ExprError):
        _evaluate("assert len(f(1)) == 1", opaque)
    assert _evaluate("assert f(1) == 1", opaque) is False
    with pytest.raises(ExprError):  # truthiness unknown: an error, never a guess
        _evaluate("assert f(1)", opaque)
    assert _evaluate("assert f(1)", decode({"x": ["mod.Thing", True]})) is True


COST_CASES: list[tuple[str, Any]] = [
    ("assert f(1) == [0] * 10**9", 0),
    ("assert f(1) == 10**9 * [0]", 0),
    ("assert f(1) == 'ab' * 10**9", 0),
    ("assert f(1) == 2 ** 10**9", 0),
    ("assert f(1) == (-3) ** 10**8", 0),
    ("assert f(1) == 1 << 10**9", 0),
    ("assert f(1) * 10**9 == []", [0]),
    ("assert 2 ** f(1) == 0", 10**9),
    ("assert str(f(1)) == '1'", 10**6000),
]


@pytest.mark.parametrize(("source", "value"), COST_CASES, ids=[source for source, _ in COST_CASES])
def test_cost_guards_refuse_huge_computations_quickly(source: str, value: Any) -> None:
    """Arithmetic that would make the judge slow or huge raises TestExpressionError in well under a second."""
    plan = _split(source)
    start = time.perf_counter()
    with pytest.raises(ExprError):
        assertions.evaluate(plan, [(True, value)])
    assert time.perf_counter() - start < 0.5


def test_cost_guard_refuses_huge_percent_formatting() -> None:
    """`assert f(3) % 2 == 1` with a candidate-chosen format string must not build a huge string."""
    plan = _split("assert f(3) % 2 == 1")
    with pytest.raises(ExprError):
        assertions.evaluate(plan, [(True, "%100000000d")])


def test_correct_candidate_passes_end_to_end() -> None:
    """Plan, run holes like the sandbox, ship as plain data, evaluate: a correct program passes."""
    program = "def f(n):\n    return [i * i for i in range(n)]\n"
    for source, verdict in [("assert f(3) == [0, 1, 4]", True), ("assert f(3) == (0, 1, 4)", False),
                            ("assert len(f(4)) == 4 and f(4)[-1] == 9", True)]:
        plan = _split(source)
        assert assertions.evaluate(plan, _run_holes(plan, program)) is verdict


def test_expected_value_built_with_non_whitelisted_builtin_passes_correct_candidate() -> None:
    """`assert f(3) == list(range(3))` is a valid test; a correct f must pass it, not get an error."""
    plan = _split("assert f(3) == list(range(3))")
    program = "def f(n):\n    return list(range(n))\n"
    assert assertions.evaluate(plan, _run_holes(plan, program)) is True


@pytest.mark.parametrize("source", [
    "assert f(1) == g(2)",
    "assert f(3) == Point(1, 2)",
    "assert f(0) == sys.maxsize",
    "assert f(3).__eq__(7)",
    "assert np.allclose(f(1), [0.5, 0.25])",
])
def test_holes_that_could_compute_or_decide_the_expected_side_are_judged_in_sandbox(source: str) -> None:
    """Only the thing under test may be a hole: anything else would let candidate code shape the expected side."""
    plan = assertions.plan_test(source)
    assert plan.in_sandbox
    assert plan.holes == (source,)


@pytest.mark.parametrize("source", [
    "assert Solution().twoSum([2, 7], 9) == [0, 1]",
    "assert f('Ab').lower() == 'ab'",
    "assert [*gen(2)] == [0, 1]",
    "assert random(3) == 4",  # a candidate function that happens to share a stdlib module's name
])
def test_one_subject_holes_stay_split(source: str) -> None:
    assert not assertions.plan_test(source).in_sandbox


# --- datasets: every test of the shapes they use is judged outside the sandbox ---------------------

def test_no_humaneval_test_is_judged_in_the_sandbox() -> None:
    from loadtest.humaneval_data import load_problems

    tests = [t for p in load_problems() for t in p.tests]
    assert len(tests) > 1500
    assert [t for t in tests if assertions.plan_test(t).in_sandbox] == []


def test_no_example_test_is_judged_in_the_sandbox() -> None:
    import gzip
    import json
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in ("humaneval_items.jsonl.gz", "humaneval_best_of_n.jsonl.gz"):
        with gzip.open(examples / name, "rt") as f:
            tests = {t for row in map(json.loads, f) for t in row["tests"]}
        assert [t for t in tests if assertions.plan_test(t).in_sandbox] == [], name


MBPP_ROWS = [  # MBPP's shape: test_imports run before each of test_list
    (["import math"], ["assert math.isclose(area(2), 12.566, rel_tol=0.001)", "assert abs(area(1) - math.pi) < 1e-9"]),
    (["from math import isclose, pi"], ["assert isclose(area(2), 4 * pi)"]),
    (["import unittest"], ["unittest.TestCase().assertEqual(first_repeated('abca'), 'a')"]),
    (["import operator", "import math"], ["assert operator.eq(round(area(1), 3), 3.142)"]),
    ([], ["assert set(similar_elements((3, 4, 5), (5, 7, 4))) == set((4, 5))",
          "assert remove_Occ('hello', 'l') == 'heo'", "assert sorted(heap_queue_largest([25, 35], 2)) == [25, 35]"]),
]


@pytest.mark.parametrize(("imports", "tests"), MBPP_ROWS)
def test_no_mbpp_shaped_test_is_judged_in_the_sandbox(imports: list[str], tests: list[str]) -> None:
    for test in tests:
        plan = assertions.plan_test("\n".join([*imports, test]))
        assert not plan.in_sandbox and plan.invalid is None, test


@pytest.mark.parametrize(("classes", "message", "verdict"), [
    (("ValueError", "Exception", "BaseException"), "ValueError: negative", "pass"),
    (("ValueError", "Exception", "BaseException"), "MyError: negative", "pass"),  # a subclass of the candidate's
    (("TypeError", "Exception", "BaseException"), "TypeError: bad", "error"),  # another exception propagates
    ((), "ResultError: result too large", "fail"),  # the hole did not raise: its value could not be sent
])
def test_assert_raises_is_judged_from_the_builtin_classes(classes: tuple[str, ...], message: str, verdict: str) -> None:
    for test in ("import unittest\nwith unittest.TestCase().assertRaises(ValueError):\n    f(-1)",
                 "import unittest\nunittest.TestCase().assertRaises(ValueError, f, -1)",
                 "from unittest import TestCase\nTestCase().assertRaises((KeyError, ValueError), lambda: f(-1))"):
        plan = _split(test)
        assert plan.holes == ("f(-1)",)
        try:
            got = "pass" if assertions.evaluate(plan, [(False, assertions.HoleError(message, classes))]) else "fail"
        except assertions.CheckFailed:
            got = "fail"
        except HoleFailed:
            got = "error"
        assert got == verdict, test


def test_assert_raises_fails_when_nothing_is_raised() -> None:
    plan = _split("import unittest\nwith unittest.TestCase().assertRaisesRegex(ValueError, 'neg'):\n    f(-1)")
    with pytest.raises(assertions.CheckFailed, match="not raised"):
        assertions.evaluate(plan, [(True, 0)])
    with pytest.raises(assertions.CheckFailed, match="pattern"):
        assertions.evaluate(plan, [(False, assertions.HoleError("ValueError: positive", ("ValueError",)))])
    assert assertions.evaluate(plan, [(False, assertions.HoleError("ValueError: negative", ("ValueError",)))])


@pytest.mark.parametrize("source", [
    "import unittest\nwith unittest.TestCase().assertRaises(ValueError):\n    1 / 0",  # no candidate code
    "import unittest\nwith unittest.TestCase().assertRaises(ValueError) as cm:\n    f(-1)",
    "import unittest\nunittest.TestCase().assertWarns(UserWarning, f, 1)",
    "import unittest\nunittest.TestCase().assertEqual(f(1), g(1))",  # the expected side by candidate code
    "import numpy as np\nassert np.allclose(f(1), [0.5])",  # numpy is not allowed in runs here
    "assert f(1) == 1\nimport math",  # a binding after a check
    "x = f(1)\nassert x == 2",
])
def test_shapes_the_judge_cannot_evaluate_run_in_the_sandbox(source: str) -> None:
    assert assertions.plan_test(source).in_sandbox


# --- values built to stall the judge are refused (found by red-teaming the judge) -------------------

COLLIDING = [i * (2**61 - 1) for i in range(1, 5000)]  # distinct ints of one hash


@pytest.mark.parametrize(("source", "value"), [
    ("import unittest\nunittest.TestCase().assertCountEqual(f(1), [1])", COLLIDING),
    ("assert {*f(1)} == {1}", COLLIDING),
    ("assert set(x for x in f(1)) == {1}", COLLIDING),
    ("assert dict((x, 1) for x in f(1)) == {}", COLLIDING),
    ("assert all(y.count(x) == 1 for y in [f(1)] for x in y)", list(range(200_000))),
    ("assert all(x not in y[:i] for y in [f(1)] for i, x in enumerate(y))", list(range(200_000))),
    ("import math\nassert math.gcd(f(1), 3 ** 400000) == 1", 7 ** 300000),
    ("assert f(1) % (3 ** 300000) == 1", 7 ** 300000),
    ("import math\nassert math.prod(f(1)) == 3", [2**60 + k for k in range(50_000)]),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_costly_judging_is_refused(source: str, value: Any) -> None:
    with pytest.raises(ExprError):
        assertions.evaluate(_split(source), [(True, value)])


@pytest.mark.parametrize("data", [
    {"dec": "1e600000"},
    {"fr": [{"i": "f" * 100_000}, {"i": "e" * 100_000}]},
    {"fr": [{"i": "1"}, {"i": "0"}]},
    {"r": [{"i": "1" + "0" * 5000}, {"i": "2" + "0" * 5000}, {"i": "1"}]},
    {"nd": ["<u8", [{"i": "-1"}]]},
    {"nd": ["<i8", [[{"i": "1"}], {"i": "2"}]]},
    {"s": [{"i": format(v, "x")} for v in COLLIDING]},
], ids=lambda v: next(iter(v)))
def test_costly_or_malformed_results_are_refused_at_decode(data: Any) -> None:
    with pytest.raises(ValueError):
        decode(data)


def test_modular_pow_of_a_big_exponent_is_allowed() -> None:
    assert _evaluate("assert pow(3, f(1), 10**9 + 7) == pow(3, 10**7, 10**9 + 7)", 10**7)


def test_the_plan_memo_is_bounded_by_what_its_plans_take() -> None:
    """Tests are request input (up to 20,000 characters each, a plan of ~1 MB): the memo of plans is bounded
    in bytes, its estimate is not below what plans really take, a test too large for it is planned but not
    kept, and the least recently used go first."""
    import tracemalloc

    from acecoder_reward.sandbox_worker.executor import PlanMemo

    tests = [f"assert f({k}, [{', '.join(str(j) for j in range(k % 40))}]) == {{'a': [{k}, 'x']}}"
             for k in range(600)]
    memo = PlanMemo(max_bytes=1 << 30)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for test in tests:
        memo.get(test, False)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held <= memo.used_bytes <= 4 * held, (held, memo.used_bytes)

    small = PlanMemo(max_bytes=memo.used_bytes // 4)
    for test in tests:
        plan, names = small.get(test, False)
        assert plan.outer is not None and names == {"f"}
    assert small.used_bytes <= small.max_bytes
    assert (tests[-1], False) in small._entries and (tests[0], False) not in small._entries
    huge = "assert f([" + "1, " * 5000 + "1]) == 2"
    assert small.get(huge, False)[1] == {"f"}
    assert (huge, False) not in small._entries and small.used_bytes <= small.max_bytes
