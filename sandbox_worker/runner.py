"""What runs inside the sandbox: load the program, evaluate each test's holes, report plain data.

Everything here executes in the candidate's own process, so nothing here is trusted: the candidate can
rewrite any of it. That is why this module never sees an expected value and never decides a pass; it only
reports values (as exact-typed plain data) on the result channel, and the judge outside compares them.

The program is extracted from the raw response here too, before any candidate code runs: parsing hostile
text is bounded by the run's deadline instead of costing the gateway, and the `code` frame that reports it
is written while the process is still pristine.

Frames on the result fd: 4-byte big-endian length + JSON object with an "ev" key:
  code{code} | no_code | loaded | load_error{error} | start{i} | hole{i, j, v | err} | end{i} | done
"""

from __future__ import annotations

import builtins
import os
import struct
import sys
import types
from typing import Any, NoReturn

from acecoder_reward.sandbox_worker import io_runner
from acecoder_reward.sandbox_worker.extract import extract_code, looks_like_plain_code
from acecoder_reward.sandbox_worker.plain_data import EncodeError, dumps, encode

RESULT_FD = 3
CANDIDATE_MODULE = "__candidate__"
# The frames with nothing but an event and a test index, as compact JSON (what `dumps` would give): most
# of a run's frames are these, and the zygote reads exactly these bytes without a JSON parse.
LOADED, DONE = b'{"ev":"loaded"}', b'{"ev":"done"}'
START, END = b'{"ev":"start","i":%d}', b'{"ev":"end","i":%d}'


# Every compile() here passes dont_inherit=True: this module's own `from __future__ import annotations` must not
# reach candidate code (its annotations would silently become strings).
# Bound at import, before the candidate runs: patching builtins or os/struct then cannot break reporting.
_len, _write, _pack, _exit, _close = len, os.write, struct.pack, os._exit, os.close


_pending: list[bytes] = []


def send(frame: dict[str, Any], flush: bool = True) -> None:
    """Queues a frame; `flush` writes the queue in one syscall. A test's `start` is flushed before its
    code runs (the zygote times the test from it); results ride along with the next flush."""
    send_payload(dumps(frame), flush)


def send_payload(payload: bytes, flush: bool = True) -> None:
    """`send` for a payload already encoded: the fixed frames below skip the JSON encoder."""
    _pending.append(_pack(">I", _len(payload)) + payload)
    if flush:
        data = b"".join(_pending)
        _pending.clear()
        while data:
            written = _write(RESULT_FD, data)
            data = data[written:]


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:500]


# The standard library's own directories: its private helpers (`_sysconfigdata_*`, `_pydecimal`) are not in
# sys.stdlib_module_names but are part of it.
_STDLIB_DIR = os.path.dirname(os.__file__)
_DYNLOAD_DIR = os.path.join(_STDLIB_DIR, "lib-dynload")


class _ImportGate:
    """Meta-path finder: third-party packages outside the allowlist look missing, with the reason."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in self.allowed or top in sys.modules or _in_stdlib(top):
            return
        raise ModuleNotFoundError(
            f"missing dependency: {top!r} is not available in the sandbox", name=top)


def _in_stdlib(top: str) -> bool:
    """Whether `top` is a module of the standard library's directories (not of site-packages below them)."""
    if "/" in top or top.startswith(".") or top == "site-packages":
        return False
    if os.path.isfile(os.path.join(_STDLIB_DIR, top + ".py")) or os.path.isdir(os.path.join(_STDLIB_DIR, top)):
        return True
    try:
        return any(entry.startswith(top + ".") for entry in os.listdir(_DYNLOAD_DIR))
    except OSError:
        return False


def run(job: dict[str, Any], start: int, compiled: list[list[Any]]) -> NoReturn:
    """Runs tests[start:] of `job`, reporting on RESULT_FD, then exits without running atexit hooks.
    `compiled[i][j]` is hole j of test i already compiled by the zygote, or None where the run must
    compile the source itself."""
    sys.meta_path.insert(0, _ImportGate(frozenset(job["allowed_modules"])))
    sys.argv = ["solution.py"]
    # A real module in sys.modules: dataclasses, pickle and typing look the defining module up there.
    module = types.ModuleType(CANDIDATE_MODULE)
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules[CANDIDATE_MODULE] = module
    namespace: dict[str, Any] = module.__dict__
    source, code = _extract(job["response"], job["names"])
    if source is None:
        send({"ev": "no_code"})
        _exit(0)
    send({"ev": "code", "code": source})
    script = job.get("io") == "stdio"  # stdin tests run the program per test, as a script
    try:
        if code is None:
            code = compile(source, "solution.py", "exec", dont_inherit=True)
        if not script:
            exec(code, namespace)
    except BaseException as exc:
        send({"ev": "load_error", "error": describe(exc)})
        _exit(0)
    send_payload(LOADED, flush=False)
    max_output = int(job["limits"]["max_output_bytes"])
    io_runner.max_file_bytes = int(job["limits"]["max_file_bytes"])
    stop = bool(job.get("stop_on_first_failure"))
    for index in range(start, len(job["tests"])):
        test = job["tests"][index]
        if "stdin" in test or "call" in test:
            raised = _run_io_test(index, test, code if script else namespace, max_output)
        else:
            raised = _run_test(index, test, namespace, compiled[index])
        if raised and stop:  # a test that raised failed, whatever it expected: the rest are not run
            break
    send_payload(DONE)
    # The hang-up wakes the zygote now; the process's own teardown (exit_mm comes before its files are
    # closed) then overlaps with the zygote's report instead of delaying it.
    _close(RESULT_FD)
    _exit(0)


_WARM_UP_PROGRAM = "def f(x):\n    return [x, 'a', 1.5, (None, True)]\n"


def warm_up() -> None:
    """Walks a run's own code paths once on a throwaway program, in a spare run before its job arrives.

    Every page a run first writes is a copy-on-write fault (~2 us each, ~400 per run), and a spare waits
    idle for its job: faulting the common pages in now takes them off the job's critical path. Nothing
    is written to the result pipe and nothing stays behind (no module, no name, no cache a program sees).
    It costs CPU of its own and faults pages the job may never touch: done in every spare under load,
    where no CPU idles, it lowered throughput by ~5% (paired A/B), so a spare only warms up when its job
    has not come soon (forker.WARM_UP_AFTER_S).
    """
    namespace: dict[str, Any] = {"__builtins__": builtins}
    source, code = _extract(_WARM_UP_PROGRAM, ["f"])
    dumps({"ev": "code", "code": source})
    exec(code, namespace)
    value = eval(compile("f(1)", "test_0.py", "eval", dont_inherit=True), namespace)
    _pack(">I", _len(dumps({"ev": "hole", "i": 0, "j": 0, "v": encode(value)})))


def _extract(response: str, names: list[str]) -> tuple[str | None, Any]:
    """The program and, when the response compiled as it is, its code object (no second parse)."""
    if looks_like_plain_code(response) and response.strip():
        try:
            return response, compile(response, "solution.py", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
    return extract_code(response, set(names)), None


def compile_hole(source: str, whole_test: bool, index: int) -> Any:
    """A hole's code, compiled the same way wherever it is compiled (the zygote or the run)."""
    return compile(source, f"test_{index}.py", "exec" if whole_test else "eval", dont_inherit=True)


def _run_test(index: int, test: dict[str, Any], namespace: dict[str, Any], compiled: list[Any]) -> bool:
    """Runs one test's holes; True when one raised (for stop_on_first_failure; the judge decides)."""
    send_payload(START % index)
    setup_error = _run_setup(test.get("setup"), index, namespace)
    raised = setup_error is not None
    for j, source in enumerate(test["holes"]):
        if setup_error is not None:
            send({"ev": "hole", "i": index, "j": j, **setup_error}, flush=False)
        else:
            frame = _evaluate_hole(index, j, source, test["in_sandbox"], namespace, compiled[j])
            # The gateway marks the tests a raised hole surely fails (no assertRaises, no short circuit).
            raised = raised or ("err" in frame and bool(test.get("fails_if_raised")))
            send(frame, flush=False)
    send_payload(END % index, flush=False)
    return raised


def _run_io_test(index: int, test: dict[str, Any], program: Any, max_output: int) -> bool:
    """A stdin test (`program` is the compiled script) or a call test (`program` is the loaded namespace):
    one hole, the output or return value."""
    send_payload(START % index)
    frame: dict[str, Any] = {"ev": "hole", "i": index, "j": 0}
    try:
        if "stdin" in test:
            value: Any = io_runner.run_stdio(program, test["stdin"], max_output)
        else:
            value = io_runner.run_call(program, test["call"], test["args"])
        frame["v"] = encode(value)
    except EncodeError as exc:
        frame["err"] = f"ResultError: {exc}"
    except BaseException as exc:
        frame.update(_error_fields(exc))
    send(frame, flush=False)
    send_payload(END % index, flush=False)
    return "err" in frame


def _run_setup(setup: str | None, index: int, namespace: dict[str, Any]) -> dict[str, Any] | None:
    """The test's imports its holes need (`import math`); what they raise is every hole's error."""
    if not setup:
        return None
    try:
        exec(compile_hole(setup, True, index), namespace)
    except BaseException as exc:
        return _error_fields(exc)
    return None


def _error_fields(exc: BaseException) -> dict[str, Any]:
    """A hole's exception: its text, and the builtin classes it derives from (assertRaises is judged on
    those outside; a class of the candidate's own is known by the builtin ones it extends)."""
    return {"err": describe(exc), "x": [c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"][:32]}


def _evaluate_hole(index: int, j: int, source: str, whole_test: bool, namespace: dict[str, Any],
                   code: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"ev": "hole", "i": index, "j": j}
    try:
        if code is None:
            code = compile_hole(source, whole_test, index)
        if whole_test:
            exec(code, namespace)
            value: Any = True
        else:
            value = eval(code, namespace)
        frame["v"] = encode(value)
    except EncodeError as exc:
        frame["err"] = f"ResultError: {exc}"  # no exception classes: the hole itself did not raise
    except BaseException as exc:
        frame.update(_error_fields(exc))
    return frame
