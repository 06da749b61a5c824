"""Test holes compiled in the zygote (once per distinct hole) and sent to the run as code objects.

Whatever the zygote cannot or will not compile (too long, a compile error, a compiler warning) is compiled by
the run as before, so the verdicts and the reasons users see are the same either way.
"""

from __future__ import annotations

import httpx

from acecoder_reward.sandbox_worker import hole_cache
from acecoder_reward.sandbox_worker.hole_cache import HoleCache
from tests.conftest import score

LATER = float("inf")  # no deadline


def test_a_short_hole_is_compiled_once_with_the_runs_filename() -> None:
    cache = HoleCache()
    code = cache.get("f(1) + 2", False, 3, LATER)
    assert code is not None and code.co_filename == "test_3.py"
    assert cache.get("f(1) + 2", False, 3, LATER) is code  # cached: one compile per distinct hole
    whole = cache.get("assert f(1) == 1", True, 0, LATER)
    assert whole is not None and eval(whole, {"f": lambda x: x}) is None  # exec mode: a statement
    job = cache.compile_job([{"holes": ["f(1) + 2"], "in_sandbox": False}] * 4)
    assert [row[0].co_filename for row in job] == ["test_0.py", "test_1.py", "test_2.py", "test_3.py"]
    assert job[3][0] is code


def test_holes_the_zygote_leaves_to_the_run() -> None:
    cache = HoleCache()
    long_hole = "f(" + "1 + " * hole_cache.MAX_SOURCE_CHARS + "1)"
    assert cache.get(long_hole, False, 0, LATER) is None and len(cache) == 0  # not even a cache key
    assert cache.get("assert (yield) == 1", True, 0, LATER) is None  # SyntaxError
    assert cache.get("assert f(1) is 1", True, 0, LATER) is None  # SyntaxWarning
    # Constant folding: under 2,000 characters of source, hundreds of KB of code object.
    folded = "f(" + " + ".join(f"'{a}{b}' * 2048" for a, b in ("AB", "AC", "AD", "AE", "AF", "AG")) + ")"
    assert len(folded) < hole_cache.MAX_SOURCE_CHARS and cache.get(folded, False, 0, LATER) is None
    assert cache.get("f(2)", False, 0, 0.0) is None and ("f(2)", False, 0) not in cache._entries  # out of time


def test_the_cache_is_bounded_in_bytes() -> None:
    cache = HoleCache(max_bytes=20_000)
    for n in range(200):
        assert cache.get(f"f({n})", False, 0, LATER) is not None
    assert cache.bytes <= 20_000 and 0 < len(cache) < 200
    assert ("f(199)", False, 0) in cache._entries and ("f(0)", False, 0) not in cache._entries  # LRU


def test_verdicts_do_not_depend_on_where_a_hole_was_compiled(client: httpx.Client) -> None:
    program = "def f(x):\n    return x\n"
    ones = ", ".join(["1"] * hole_cache.MAX_SOURCE_CHARS)  # a hole this long is compiled by the run
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
