"""Property tests of the trusted judge (Hypothesis, fixed seed: a failure reproduces from the CI log).

On generated asserts over generated plain values, the split evaluation (the hole run as the sandbox runs it,
its value sent as plain data, the rest judged by trusted_eval) gives the verdict Python gives when it runs
the whole assert: pass, fail (AssertionError) or error (any other exception). And plain data round-trips.
"""

from __future__ import annotations

import json
import math
import operator
import os
import unittest
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from acecoder_reward.sandbox_worker import assertions
from acecoder_reward.sandbox_worker.plain_data import decode, dumps, encode

# Fixed, so a failure reproduces from the CI log; PROPERTY_SEED / PROPERTY_EXAMPLES explore further by hand.
SEED = int(os.environ.get("PROPERTY_SEED", "20261206"))
PROPERTY = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "400")), deadline=None, print_blob=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                    st.floats(allow_nan=False, width=64), st.text(max_size=8), st.binary(max_size=6))
hashables = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6)
values = st.recursive(
    scalars | hashables,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.sets(hashables, max_size=4)
                   | st.dictionaries(hashables, inner, max_size=3)),
    max_leaves=10)
literals = values.map(repr).filter(lambda text: "inf" not in text)  # repr(inf) is not a literal

# Templates of asserts over the candidate's value `f(0)` ({h}) and a literal of the test's ({l}).
TEMPLATES = [
    "assert {h} == {l}", "assert {h} != {l}", "assert {h} < {l}", "assert {h} >= {l}", "assert {h} in {l}", "assert {l} in {h}",
    "assert not {h}", "assert {h}", "assert {h} is None", "assert len({h}) == 2", "assert sorted({h}) == {l}",
    "assert abs({h}) < {l}", "assert {h}[0] == {l}", "assert {h} + {l} == {l}", "assert str({h}) == {l}", "assert set({h}) == {l}",
    "assert round({h}, 2) == {l}", "assert all(x == {l} for x in list({h}))", "assert any(x != {l} for x in list({h}))",
    "assert [x for x in list({h}) if x] == {l}", "assert sorted({h}, key=lambda v: -v) == {l}",
    "import math\nassert math.isclose({h}, {l})", "import operator\nassert operator.eq({h}, {l})",
    "from math import isclose\nassert isclose({h}, {l}, rel_tol=1e-9)", "assert {h} == {l}\nassert {l} == {h}",
    "import unittest\nunittest.TestCase().assertEqual({h}, {l})", "import unittest\nunittest.TestCase().assertIn({h}, {l})",
    "import unittest\nunittest.TestCase().assertTrue({h})", "import unittest\nunittest.TestCase().assertIsNone({h})",
    "import unittest\nunittest.TestCase().assertAlmostEqual({h}, {l})",
    "import unittest\nunittest.TestCase().assertAlmostEqual({h}, {l}, 2)",
    "import unittest\nunittest.TestCase().assertNotAlmostEqual({h}, {l}, 1, 'msg')",
    "import unittest\nunittest.TestCase().assertCountEqual({h}, {l})",
    "import unittest\nunittest.TestCase().assertListEqual({h}, {l})",
    "import unittest\nunittest.TestCase().assertGreater({h}, {l})",
    "import unittest\nunittest.TestCase().assertSequenceEqual({h}, {l})",
    "assert {h}.count({l}) == 1",
]


def python_verdict(test: str, value: Any) -> str:
    """The verdict of the whole test run in one process, as a harness inside the candidate would run it."""
    namespace: dict[str, Any] = {"f": lambda *a: value, "math": math, "operator": operator, "unittest": unittest}
    try:
        exec(compile(test, "<test>", "exec"), namespace)
    except AssertionError:
        return "fail"
    except Exception:
        return "error"
    return "pass"


def split_verdict(plan: assertions.TestPlan, value: Any) -> str:
    """The hole as the sandbox computes it, its value through the wire format, the rest by the judge."""
    namespace: dict[str, Any] = {"f": lambda *a: value}
    holes: list[tuple[bool, Any]] = []
    for source in plan.holes:
        try:
            holes.append((True, decode(json.loads(dumps(encode(eval(source, namespace)))))))
        except Exception as exc:
            holes.append((False, assertions.HoleError(f"{type(exc).__name__}: {exc}")))
    try:
        return "pass" if assertions.evaluate(plan, holes) else "fail"
    except assertions.CheckFailed:
        return "fail"
    except (assertions.HoleFailed, assertions.TestExpressionError):
        return "error"


@seed(SEED)
@PROPERTY
@given(template=st.sampled_from(TEMPLATES), value=values, literal=literals)
def test_split_evaluation_agrees_with_python(template: str, value: Any, literal: str) -> None:
    test = template.format(h="f(0)", l=literal)
    plan = assertions.plan_test(test)
    assert not plan.in_sandbox and plan.invalid is None, test
    assert split_verdict(plan, value) == python_verdict(test, value), (test, value)


@seed(SEED)
@PROPERTY
@given(value=values)
def test_plain_data_round_trips_with_exact_types(value: Any) -> None:
    back = decode(json.loads(dumps(encode(value))))
    assert _typed(back) == _typed(value)


def _typed(value: Any) -> Any:
    """A value with every element tagged by its exact type, so 1 == 1.0 == True are told apart."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_typed(v) for v in value])
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted(map(repr, map(_typed, value))))
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    return (type(value).__name__, repr(value))
