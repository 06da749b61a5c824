"""Input/output tests: stdin/stdout and function-call tests, as APPS, TACO, CodeContests and LiveCodeBench
write them, judged like asserts: the candidate's output leaves the sandbox as data and is compared here.

Wire form between the gateway and the executor (JSON-ready, so it crosses the queue as is), one per test:
  {"kind": "stdio", "input": str, "output": str, "compare": "tokens" | "lines" | "exact"}
  {"kind": "call", "fn": name, "args": [json values], "output": json value}
The run gets only the input side (`io_job`); the expected output stays with the judge (`compare_*`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from acecoder_reward.sandbox_worker.plain_data import Opaque

COMPARE_MODES = ("tokens", "lines", "exact")
FLOAT_TOLERANCE = 1e-6


class IOTestsError(ValueError):
    """The tests are not in a shape this module reads; the message says what is wrong."""


def from_spec(spec: Any, fn_name: str | None = None, compare: str = "tokens") -> list[dict[str, Any]]:
    """Wire tests from the shapes datasets use: `{"inputs", "outputs", "fn_name"?}` (APPS/TACO `input_output`,
    verl's `ground_truth`; also as a JSON string), CodeContests' `{"input": [...], "output": [...]}`, and
    LiveCodeBench's list of `{"input", "output", "testtype"}` (functional tests need `fn_name`)."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise IOTestsError(f"not JSON: {exc}") from exc
    if isinstance(spec, list):
        return [_livecodebench(case, k, fn_name, compare) for k, case in enumerate(spec)]
    if not isinstance(spec, dict):
        raise IOTestsError("expected an object with inputs and outputs, or a list of LiveCodeBench tests")
    if "inputs" in spec or "outputs" in spec:
        inputs, outputs = spec.get("inputs"), spec.get("outputs")
        fn = spec.get("fn_name") or fn_name
    elif "input" in spec and "output" in spec:  # CodeContests
        inputs, outputs, fn = spec["input"], spec["output"], None
    else:
        raise IOTestsError("expected inputs and outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise IOTestsError("inputs and outputs must be lists of the same length")
    if fn is not None and not isinstance(fn, str):
        raise IOTestsError("fn_name must be a string")
    if fn:
        return [_call(fn, args, out, k) for k, (args, out) in enumerate(zip(inputs, outputs, strict=True))]
    return [stdio(inp, out, compare, k) for k, (inp, out) in enumerate(zip(inputs, outputs, strict=True))]


def stdio(stdin: Any, stdout: Any, compare: str, k: int = 0) -> dict[str, Any]:
    return {"kind": "stdio", "input": _text(stdin, f"inputs.{k}"), "output": _text(stdout, f"outputs.{k}"),
            "compare": compare}


MAX_NESTING = 50


def _call(fn: str, args: Any, output: Any, k: int) -> dict[str, Any]:
    if not isinstance(args, list):
        raise IOTestsError(f"inputs.{k}: a function test's input is the list of its arguments")
    if not fn.isidentifier():
        raise IOTestsError("fn_name must be a Python identifier")
    if _nesting(args) > MAX_NESTING or _nesting(output) > MAX_NESTING:
        raise IOTestsError(f"inputs.{k}: nested deeper than {MAX_NESTING} levels")
    return {"kind": "call", "fn": fn, "args": args, "output": output}


def _nesting(value: Any) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        if isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
    return deepest


def _livecodebench(case: Any, k: int, fn_name: str | None, compare: str) -> dict[str, Any]:
    if not isinstance(case, dict) or not isinstance(case.get("input"), str) or "output" not in case:
        raise IOTestsError(f"{k}: a LiveCodeBench test has input, output and testtype")
    if case.get("testtype", "stdin") == "stdin":
        return stdio(case["input"], case["output"], compare, k)
    if case.get("testtype") != "functional" or not fn_name:
        raise IOTestsError(f"{k}: a functional test needs the item's fn_name (the row's metadata func_name)")
    try:
        args = [json.loads(line) for line in case["input"].splitlines() if line.strip()]
        output = json.loads(case["output"]) if isinstance(case["output"], str) else case["output"]
    except ValueError as exc:
        raise IOTestsError(f"{k}: a functional test's input is one JSON value per line: {exc}") from exc
    return _call(fn_name, args, output, k)


def _text(value: Any, where: str) -> str:
    """A stdin or stdout: a string, or a list of lines joined with newlines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value) + ("\n" if value else "")
    raise IOTestsError(f"{where}: expected a string or a list of lines")


def io_job(test: dict[str, Any]) -> dict[str, Any]:
    """What the run gets: the input side only."""
    if test["kind"] == "stdio":
        return {"stdin": test["input"]}
    return {"call": test["fn"], "args": test["args"]}


# --- the trusted comparison ---------------------------------------------------------------------------

def compare_stdout(actual: Any, expected: str, mode: str) -> str | None:
    """None when `actual` (the run's stdout) matches, else a short reason that does not echo the output."""
    if not isinstance(actual, str):
        return "the program's output is not text"
    if mode == "exact":
        return None if actual == expected else _first_difference(actual, expected)
    if mode == "lines":
        got, want = _lines(actual), _lines(expected)
        if len(got) != len(want):
            return f"expected {len(want)} lines, got {len(got)}"
        bad = next((i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), None)
        return None if bad is None else f"line {bad + 1} differs"
    got_tokens, want_tokens = actual.split(), expected.split()
    if len(got_tokens) != len(want_tokens):
        return f"expected {len(want_tokens)} tokens, got {len(got_tokens)}"
    bad = next((i for i, (a, b) in enumerate(zip(got_tokens, want_tokens, strict=True))
                if not _tokens_equal(a, b)), None)
    return None if bad is None else f"token {bad + 1} differs"


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _first_difference(actual: str, expected: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b),
              min(len(actual), len(expected)))
    return f"output differs at character {at + 1} (expected {len(expected)} characters, got {len(actual)})"


def _tokens_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = _number(a), _number(b)
    return x is not None and y is not None and _close(x, y)


def _number(token: str) -> float | None:
    if len(token) > 64:
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _close(x: float, y: float) -> bool:
    return abs(x - y) <= FLOAT_TOLERANCE or abs(x - y) <= FLOAT_TOLERANCE * max(abs(x), abs(y))


def compare_return(actual: Any, expected: Any) -> str | None:
    """None when the returned value equals the expected one (floats within 1e-6, tuples as lists, or the
    value wrapped in a one-element list, as APPS writes outputs), else a short reason."""
    if _contains_opaque(actual):
        return "the return value is not plain data"
    if plain_equal(actual, expected) or (isinstance(expected, list) and len(expected) == 1
                                         and plain_equal(actual, expected[0])):
        return None
    return "return value differs"


def plain_equal(a: Any, b: Any, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b and isinstance(a, bool) == isinstance(b, bool)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return _close(float(a), float(b)) if math.isfinite(a) and math.isfinite(b) else a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(plain_equal(x, y, depth + 1) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(plain_equal(a[k], b[k], depth + 1) for k in a)
    return bool(type(a) is type(b) and a == b)


def _contains_opaque(value: Any) -> bool:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Opaque):
            return True
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False


def describe(test: dict[str, Any]) -> str:
    """A short label for a wire test (for logs and plan sources), without its expected output."""
    if test["kind"] == "stdio":
        return f"<stdin test, {len(test['input'])} characters of input>"
    return f"<call {test['fn']} with {len(test['args'])} arguments>"


def check_wire(tests: Sequence[Any]) -> None:
    """Raises IOTestsError for a wire test list the executor cannot run (queue input is checked again)."""
    kinds = {t["kind"] if isinstance(t, dict) else "assert" for t in tests}
    if len(kinds) > 1:
        raise IOTestsError("an item's tests must be all asserts, all stdin/stdout or all function calls")
    for t in tests:
        if isinstance(t, dict) and (t.get("kind") not in ("stdio", "call")
                                    or (t["kind"] == "stdio" and t.get("compare") not in COMPARE_MODES)):
            raise IOTestsError("malformed input/output test")
