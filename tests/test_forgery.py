"""Forging a verdict from inside the candidate's process, through the HTTP API: never credited.

A wrong program that patches the helpers its tests use (math, operator, builtins, unittest, numpy, entries of
sys.modules), at import or when it is called, must not pass a test in any of the shapes datasets write:
those tests are split, and the comparing is done by the judge's own, unpatched modules. What cannot be split
is reported as judged in the sandbox and, by default, adds no reward.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from acecoder_reward.sandbox_worker import isolation
from tests.conftest import Gateway, score, start_gateway, stop_gateway

PI = 3.141592653589793
CORRECT = ("import math\n"
           "def area(r):\n    if r < 0:\n        raise ValueError('negative radius')\n    return math.pi * r * r\n"
           "def areas():\n    return [area(1.0), area(2.0)]\n"
           "def table():\n    return {'one': area(1.0)}\n")
WRONG = ("def area(r):\n    return 0.0\n"
         "def areas():\n    return [0.0, 0.0]\n"
         "def table():\n    return {'one': 0.0}\n")

# What a forging program does to every helper a judge inside its process would use.
PATCH = """
import builtins, math, operator, sys, types, unittest
def _yes(*a, **k):
    return True
def _none(*a, **k):
    return None
class _Raises:
    def __init__(self, *a, **k): pass
    def __enter__(self): return self
    def __exit__(self, *exc): return True
def forge():
    math.isclose = _yes
    for name in ('eq', 'ne', 'lt', 'le', 'gt', 'ge', 'contains', 'truth'):
        setattr(operator, name, _yes)
    for name in dir(unittest.TestCase):
        if name.startswith(('assert', 'fail')):
            setattr(unittest.TestCase, name, _none)
    unittest.TestCase.assertRaises = lambda self, *a, **k: _Raises()
    unittest.TestCase.assertRaisesRegex = lambda self, *a, **k: _Raises()
    for name in ('abs', 'round', 'sorted', 'all', 'any'):  # (patching what the runner needs only crashes it)
        setattr(builtins, name, _yes)
    fake = types.ModuleType('math')
    fake.isclose = _yes
    fake.pi = 0.0
    sys.modules['math'] = fake
    sys.modules['operator'] = types.SimpleNamespace(eq=_yes)
    try:
        import numpy
        numpy.allclose = numpy.isclose = numpy.array_equal = _yes
        numpy.testing.assert_allclose = numpy.testing.assert_array_equal = _none
    except Exception:  # not allowed in runs (a second try fails differently)
        pass
"""
AT_IMPORT = PATCH + "forge()\n" + WRONG
AT_CALL = PATCH + WRONG.replace("    return 0.0\n", "    forge()\n    return 0.0\n", 1)

# Tests in the shapes datasets use, each true of CORRECT and false of WRONG.
SHAPES = [
    f"import math; assert math.isclose(area(1.0), {PI!r}, rel_tol=1e-9)",
    f"import operator; assert operator.eq(area(2.0), {4 * PI!r})",
    f"from math import isclose; assert isclose(area(1.0), {PI!r})",
    "import math\nassert abs(area(1.0) - math.pi) < 1e-6",
    f"import math\nassert abs(area(1.0) - {PI!r}) < 1e-6",
    "assert round(area(1.0), 2) == 3.14",
    "assert sorted(areas()) == sorted([area_ for area_ in [3.141592653589793, 12.566370614359172]])",
    "assert set(table()) == {'one'} and table()['one'] > 3",
    "assert all(x > 1 for x in areas())",
    "assert any(abs(x - 3.14159) < 1e-3 for x in areas())",
    f"import unittest; unittest.TestCase().assertEqual(area(1.0), {PI!r})",
    f"import unittest; unittest.TestCase().assertTrue(area(1.0) == {PI!r})",
    f"from unittest import TestCase\nTestCase().assertAlmostEqual(area(1.0), {PI!r})",
    "import unittest\ntc = unittest.TestCase()\ntc.assertAlmostEqual(area(1.0), 3.14, places=2)",
    f"import unittest\ntc = unittest.TestCase()\ntc.assertIn(area(1.0), [{PI!r}])",
    "import unittest; unittest.TestCase().assertGreater(area(1.0), 3)",
    "import unittest; unittest.TestCase().assertFalse(area(1.0) == 0)",
    "import unittest; unittest.TestCase().assertIsNotNone(areas()[0] or None)",
    f"import unittest; unittest.TestCase().assertListEqual(areas(), [{PI!r}, {4 * PI!r}])",
    f"import unittest; unittest.TestCase().assertDictEqual(table(), {{'one': {PI!r}}})",
    f"import unittest; unittest.TestCase().assertCountEqual(areas(), [{4 * PI!r}, {PI!r}])",
    "import unittest\nwith unittest.TestCase().assertRaises(ValueError):\n    area(-1)",
    "import unittest; unittest.TestCase().assertRaises(ValueError, area, -1)",
    "import unittest\nwith unittest.TestCase().assertRaisesRegex(ValueError, 'negative'):\n    area(-1)",
    f"assert area(1.0) == {PI!r}\nassert area(2.0) == {4 * PI!r}",
]


def _judge(client: httpx.Client, program: str, tests: list[str], **extra: object) -> dict:
    return score(client, program, tests, limits={"test_timeout_s": 2, "program_timeout_s": 8, "memory_mb": 512},
                 **extra)["tests"]


def test_every_shape_is_judged_outside_and_passes_a_correct_program(client: httpx.Client) -> None:
    result = _judge(client, CORRECT, SHAPES)
    assert result["judged_in_sandbox"] == []
    assert result["outcomes"] == ["pass"] * len(SHAPES), list(zip(SHAPES, result["details"], strict=True))


@pytest.mark.parametrize("program", [AT_IMPORT, AT_CALL], ids=["patched at import", "patched when called"])
def test_patched_helpers_never_credit_a_wrong_program(client: httpx.Client, program: str) -> None:
    result = _judge(client, program, SHAPES)
    assert result["judged_in_sandbox"] == []
    assert result["status"] == "ok"
    assert result["outcomes"] == ["fail"] * len(SHAPES), list(zip(SHAPES, result["outcomes"], result["details"],
                                                                  strict=True))


def test_mbpp_test_imports_are_accepted_and_split(client: httpx.Client) -> None:
    item = {"response": AT_IMPORT, "tests": [f"assert isclose(area(1.0), {PI!r})", "assert abs(area(2.0) - 4 * pi) < 1e-9"],
            "test_imports": ["from math import isclose, pi"]}
    answer = client.post("/v1/rewards", json={"items": [item, {**item, "response": CORRECT}]})
    assert answer.status_code == 200, answer.text
    wrong, right = (i["tests"] for i in answer.json()["items"])
    assert wrong["judged_in_sandbox"] == right["judged_in_sandbox"] == []
    assert wrong["outcomes"] == ["fail", "fail"]
    assert right["outcomes"] == ["pass", "pass"]


UNSPLITTABLE = "for r in (1.0, 2.0):\n    assert area(r) > 3"  # a loop: judged in the candidate's process


def test_untrusted_policy_exclude_is_the_default_and_adds_no_reward(client: httpx.Client) -> None:
    honest_looking = "def area(r):\n    return 4.0\n"  # passes the loop, fails the split test
    split_test = f"assert area(1.0) == {PI!r}"
    result = score(client, honest_looking, [UNSPLITTABLE, split_test])
    assert result["tests"]["judged_in_sandbox"] == [0]
    assert result["tests"]["outcomes"] == ["pass", "fail"]
    assert result["tests"]["untrusted_tests"] == "exclude"
    assert (result["tests"]["passed"], result["tests"]["total"], result["reward"]) == (0, 1, 0.0)

    only_untrusted = score(client, honest_looking, [UNSPLITTABLE])
    assert only_untrusted["reward"] == 0.0
    assert only_untrusted["tests"]["status"] == "all_tests_untrusted"
    assert only_untrusted["tests"]["outcomes"] == ["pass"]


@pytest.mark.parametrize(("policy", "reward", "passed", "total"), [("count", 0.5, 1, 2), ("fail", 0.0, 0, 2)])
def test_untrusted_policy_count_and_fail(client: httpx.Client, policy: str, reward: float, passed: int,
                                         total: int) -> None:
    result = score(client, "def area(r):\n    return 4.0\n", [UNSPLITTABLE, f"assert area(1.0) == {PI!r}"],
                   untrusted_tests=policy)
    assert (result["tests"]["passed"], result["tests"]["total"], result["reward"]) == (passed, total, reward)
    assert result["tests"]["untrusted_tests"] == policy


def test_untrusted_policy_is_validated(client: httpx.Client) -> None:
    answer = client.post("/v1/rewards", json={"items": [{"response": "x = 1", "tests": ["assert x"]}],
                                              "untrusted_tests": "sometimes"})
    assert answer.status_code == 422
    assert "untrusted_tests" in answer.text


def test_judged_in_sandbox_share_in_metrics(client: httpx.Client) -> None:
    def judged() -> dict[str, float]:
        text = client.get("/metrics").text
        return {where: sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith(f'acecoder_tests_judged_total{{where="{where}"}}'))
                for where in ("trusted", "sandbox")}

    before = judged()
    score(client, "def area(r):\n    return 4.0\n", [UNSPLITTABLE, "assert area(1.0) == 4.0", "assert area(2) == 4"])
    after = judged()
    assert after["trusted"] - before["trusted"] == 2
    assert after["sandbox"] - before["sandbox"] == 1


# --- found by the hostile corpus: stdlib that must import, results that must fit ------------------------

def test_the_whole_standard_library_imports_in_runs(client: httpx.Client) -> None:
    program = "import sysconfig\ndef paths():\n    return sorted(sysconfig.get_paths())\n"
    result = score(client, program, ["assert 'stdlib' in paths()"])
    assert result["tests"]["status"] == "ok", result
    assert result["tests"]["outcomes"] == ["pass"], result["tests"]["details"]


def test_a_correct_big_int_result_is_judged(client: httpx.Client) -> None:
    result = score(client, "def bigint():\n    return 10 ** 100000\n",
                   ["assert bigint() == 10**100000", "assert bigint() != 10**100000 + 1"])
    assert result["tests"]["outcomes"] == ["pass", "pass"], result["tests"]["details"]


def test_a_result_over_the_size_cap_is_an_error_not_a_pass(client: httpx.Client) -> None:
    result = score(client, "def huge():\n    return 1 << 200_000_000\n", ["assert huge() > 0"])
    assert result["tests"]["outcomes"] == ["error"], result["tests"]["details"]


# --- numpy, where runs may import it -----------------------------------------------------------------

@pytest.fixture(scope="module")
def numpy_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-numpy"),
                       {"ACECODER_SANDBOX_ALLOWED_MODULES": json.dumps(["numpy"]), "ACECODER_POOL_SIZE": "2"})
    yield gw
    stop_gateway(gw)


NUMPY_SHAPES = [
    f"import numpy as np; assert np.allclose(areas(), [{PI!r}, {4 * PI!r}])",
    "import numpy as np\nassert np.array_equal(np.array(areas()) > 3, [True, True])",
    f"import numpy\nassert numpy.isclose(area(1.0), {PI!r})",
    f"import numpy as np\nnp.testing.assert_allclose(areas(), [{PI!r}, {4 * PI!r}])",
    f"from numpy.testing import assert_array_equal\nassert_array_equal(areas(), [{PI!r}, {4 * PI!r}])",
]


def test_numpy_comparisons_are_judged_with_the_judges_numpy(numpy_gateway: Gateway) -> None:
    import numpy

    program_numpy = "import numpy as np\n" + CORRECT.replace("return [area(1.0), area(2.0)]",
                                                             "return np.array([area(1.0), area(2.0)])")
    # Where the virtualenv lives under /tmp (a CI clone), each run's scratch tmpfs covers it: runs cannot
    # import numpy there (as the README says), though the judge still can.
    importable = not numpy.__file__.startswith(isolation.SCRATCH_DIR + "/")
    with numpy_gateway.client() as client:
        for program, verdict in ((CORRECT, "pass"), (program_numpy, "pass" if importable else "error"),
                                 (AT_IMPORT, "fail"), (AT_CALL, "fail")):
            result = _judge(client, program, NUMPY_SHAPES)
            assert result["judged_in_sandbox"] == []
            assert result["outcomes"] == [verdict] * len(NUMPY_SHAPES), list(zip(
                NUMPY_SHAPES, result["outcomes"], result["details"], strict=True))
