"""Test holes compiled in the zygote (once per distinct hole) and sent to the run as code objects.

Whatever the zygote cannot or will not compile (too long, a compile error, a compiler warning) is compiled by
the run as before, so the verdicts and the reasons users see are the same either way.
"""

from __future__ import annotations

import httpx

from sandbox_worker import supervise
from tests.conftest import score


def test_a_short_hole_is_compiled_once_with_the_runs_filename() -> None:
    code = supervise._compiled_hole("f(1) + 2", False, 3)
    assert code is not None and code.co_filename == "test_3.py"
    assert supervise._compiled_hole("f(1) + 2", False, 3) is code  # cached: one compile per distinct hole
    whole = supervise._compiled_hole("assert f(1) == 1", True, 0)
    assert whole is not None and eval(whole, {"f": lambda x: x}) is None  # exec mode: a statement


def test_holes_the_zygote_leaves_to_the_run() -> None:
    long_hole = "f(" + "1 + " * supervise.MAX_PRECOMPILED_HOLE_CHARS + "1)"
    assert supervise._compiled_hole(long_hole, False, 0) is None
    assert supervise._compiled_hole("assert (yield) == 1", True, 0) is None  # SyntaxError
    assert supervise._compiled_hole("assert f(1) is 1", True, 0) is None  # SyntaxWarning


def test_verdicts_do_not_depend_on_where_a_hole_was_compiled(client: httpx.Client) -> None:
    program = "def f(x):\n    return x\n"
    ones = ", ".join(["1"] * supervise.MAX_PRECOMPILED_HOLE_CHARS)  # a hole this long is compiled by the run
    result = score(client, program, [
        "assert f(3) == 3",
        f"assert f([{ones}]) == [{ones}]",
        f"assert f([{ones}]) == [0]",
        "assert (yield) == 1",
        "assert f(1) == 2",
    ])
    tests = result["tests"]
    assert tests["outcomes"] == ["pass", "pass", "fail", "error", "fail"], tests
    assert "SyntaxError" in tests["details"][3], tests["details"]


def test_a_test_too_deep_to_split_runs_whole_in_the_sandbox(client: httpx.Client) -> None:
    """ast.parse takes `f(1 + 1 + ...)` ~2000 terms deep; splitting it recursed past Python's limit and the
    gateway answered 500. Now the whole assert runs in the sandbox, like any test that cannot be split."""
    deep = " + ".join(["1"] * 1500)
    result = score(client, "def f(x):\n    return x\n", [f"assert f({deep}) == 1500", f"assert f({deep}) == 0"])
    assert result["tests"]["judged_in_sandbox"] == [0, 1]  # indices of the tests judged inside
    assert result["tests"]["outcomes"] == ["pass", "fail"], result["tests"]
