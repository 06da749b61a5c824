"""Unit tests for sandbox_worker.extract: taking the program out of a raw LLM response."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acecoder_reward.sandbox_worker import extract

REPO = Path(__file__).resolve().parent.parent

SOLUTION = "def add(a, b):\n    return a + b\n"


def _fence(code: str, tag: str = "python") -> str:
    return f"```{tag}\n{code}```\n"


def test_think_block_is_dropped() -> None:
    """Code inside <think>...</think> is reasoning, not the answer; only the code after it is taken."""
    draft = "def add(a, b):\n    return a - b  # a much longer wrong draft\n"
    response = "<think>\nMaybe:\n" + _fence(draft) + "</think>\nHere it is:\n" + _fence(SOLUTION)
    assert extract.extract_code(response) == SOLUTION


def test_unclosed_think_block_is_dropped_to_the_end() -> None:
    """An unclosed <think> swallows the rest of the response, drafts included."""
    retry = "def add(a, b):\n" + "    pass\n" * 50
    response = _fence(SOLUTION) + "<think>\nlet me try again\n" + _fence(retry)
    assert extract.extract_code(response) == SOLUTION


def test_response_that_is_only_thinking_has_no_code() -> None:
    """Nothing outside the think block means no code at all."""
    assert extract.extract_code("<think>\ndef add(a, b):\n    return a + b\n</think>") is None


@pytest.mark.parametrize("tag", ["python", "py", "python3", "Python", ""])
def test_single_python_fence_is_taken(tag: str) -> None:
    """One fenced python block (any python-ish tag, or none) is the program, without the prose around it."""
    response = "Sure! Here is the function:\n\n" + _fence(SOLUTION, tag) + "\nIt returns the sum."
    assert extract.extract_code(response) == SOLUTION


def test_unclosed_fence_runs_to_the_end() -> None:
    """A response truncated inside its fence still yields the code written so far."""
    assert extract.extract_code("Here:\n```python\n" + SOLUTION) == SOLUTION


def test_fence_defining_called_names_wins_over_longer_one() -> None:
    """Among several fences, the one defining the names the tests call is taken, even if shorter."""
    body = "".join(f"    x{i} = {i}\n" for i in range(30))
    helper = "def unrelated_helper(values):\n" + body + "    return 0\n"
    wanted = "def solve(n):\n    return n * 2\n"
    response = ("First a helper:\n" + _fence(helper) + "Then the answer:\n" + _fence(wanted)
                + "Usage:\n" + _fence("print(solve(3))\n"))
    tests = ["assert solve(3) == 6", "assert solve(0) == 0"]
    assert extract.called_names(tests) == {"solve"}
    assert extract.extract_code(response, extract.called_names(tests)) == wanted
    assert extract.extract_code(response) == helper  # without test names: the longest block


def test_called_names_collects_plain_function_calls_only() -> None:
    """called_names returns names of called functions, ignores method calls and unparsable tests."""
    tests = ["assert f(1) == g(h(2))", "assert obj.method(1)", "assert (", "assert len(k(1)) == 2"]
    assert extract.called_names(tests) == {"f", "g", "h", "len", "k"}


@pytest.mark.parametrize("code", [
    SOLUTION,
    "import math\n\n\ndef area(r):\n    return math.pi * r ** 2\n",
    "x = 1\nprint(x)\n",
])
def test_plain_code_is_used_as_is(code: str) -> None:
    """A response that already parses as Python is returned unchanged."""
    assert extract.extract_code(code) == code


def test_prose_with_unfenced_code_gives_longest_parsing_run() -> None:
    """Without fences, the longest run of lines that parses (and holds a statement) is the program."""
    short = "x = 1"
    response = ("Here is my answer.\n" + short + "\nAnd now the real solution:\n" + SOLUTION
                + "This adds two numbers, as asked.\n")
    code = extract.extract_code(response)
    assert code is not None
    assert code.strip() == SOLUTION.strip()
    ast.parse(code)


@pytest.mark.parametrize("response", [
    "",
    "   \n\n  ",
    "I'm sorry, I cannot help with that request.",
    "The answer is to add the two numbers.\nThat is all there is to it!",
    "Hello world",
])
def test_no_code_gives_none(response: str) -> None:
    """Prose only (or nothing) yields None, not a word that happens to parse as an expression."""
    assert extract.extract_code(response) is None


def test_bash_fence_is_ignored() -> None:
    """A ```bash block is never taken as the program, even when it is the longest block."""
    bash = "pip install numpy scipy pandas matplotlib\n" * 10
    response = "Install first:\n" + _fence(bash, "bash") + "Then:\n" + _fence(SOLUTION)
    assert extract.extract_code(response) == SOLUTION


def test_only_bash_fence_gives_no_code() -> None:
    """With only a shell block and prose, there is no python program to run."""
    response = "Run this:\n" + _fence("pip install numpy\nls -la /tmp\n", "bash") + "That's it."
    assert extract.extract_code(response) is None


def test_hostile_prose_returns_quickly() -> None:
    """A 1000-line prose response (every line a parse failure) is scanned within a bounded time."""
    response = "\n".join(f"Step {i}: consider the next case here." for i in range(1000))
    start = time.perf_counter()
    assert extract.extract_code(response) is None
    assert time.perf_counter() - start < 2.0


_CHILD = """
import os, signal, sys, time
from acecoder_reward.sandbox_worker.extract import extract_code
text = sys.stdin.read()
signal.signal(signal.SIGALRM, lambda *args: os._exit(3))
signal.setitimer(signal.ITIMER_REAL, float(sys.argv[1]))
start = time.perf_counter()
extract_code(text)
print(time.perf_counter() - start)
"""


def _extract_within(text: str, deadline_s: float) -> bool:
    """Runs extract_code in a child that kills itself at the deadline: a slow case cannot hang the suite."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(deadline_s)], input=text, cwd=REPO,
                          capture_output=True, text=True, timeout=deadline_s + 60)
    if done.returncode not in (0, 3):  # a broken harness must not pass for the bug
        raise RuntimeError(f"extract child failed ({done.returncode}): {done.stderr}")
    return done.returncode == 0 and float(done.stdout) < deadline_s


def test_extract_within_harness_reports_a_fast_case() -> None:
    """The child-process timer used below says True for an ordinary response."""
    assert _extract_within("Here:\n" + _fence(SOLUTION), 2.0)


@pytest.mark.parametrize("response", [
    pytest.param("(\n" + "\n".join("a," for _ in range(999)), id="unclosed_paren_3kB"),
    pytest.param("\n".join("(" * 90 + ")" * 90 for _ in range(1000)) + "\n?", id="nested_parens_181kB"),
])
def test_hostile_lines_return_quickly(response: str) -> None:
    """1000 hostile lines (within the 200k-char response cap) must not stall extraction beyond 2 s."""
    assert response.count("\n") < 1001 and len(response) < 200_000
    assert _extract_within(response, 2.0)
