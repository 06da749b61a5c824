"""The trusted judge: turns a zygote report plus the hidden test plans into per-test outcomes.

Runs outside the sandbox, in the process that holds the expected values. A test passes only when it has a
trusted result: its holes all came back as plain data and the outer expression is true on them (or, for a
test judged in the sandbox, the test ran to its end without raising). Anything else is fail, error,
timeout or not_run, never pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acecoder_reward.sandbox_worker import assertions, io_tests
from acecoder_reward.sandbox_worker.plain_data import decode

PASS, FAIL, ERROR, TIMEOUT, NOT_RUN = "pass", "fail", "error", "timeout", "not_run"


@dataclass
class TestsResult:
    """The tests reward of one item, as returned by the API."""

    status: str
    outcomes: list[str]
    details: list[str | None]
    judged_in_sandbox: list[int] = field(default_factory=list)
    run_time_s: float = 0.0
    kills: list[str] = field(default_factory=list)  # why runs were ended from outside (for metrics)

    @property
    def passed(self) -> int:
        return self.outcomes.count(PASS)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


def not_run(status: str, total: int, detail: str) -> TestsResult:
    return TestsResult(status, [NOT_RUN] * total, [detail] * total)


def clean_text(text: str | None) -> str | None:
    """Candidate-made text (error messages, code) as valid UTF-8: a lone surrogate must not fail the response."""
    if text is None:
        return None
    return text.encode("utf-8", "replace").decode("utf-8")


def judge(plans: list[assertions.TestPlan], report: dict[str, Any], stop_on_first_failure: bool = False) -> TestsResult:
    """`plans` are all the item's tests; the report covers the runnable ones, in the same order. With
    `stop_on_first_failure`, every test after the first that did not pass is not_run, whatever the run
    reported for it (the run was stopped there, by the sandbox or by `verdict` on its streamed tests)."""
    runnable = iter(report["tests"])
    outcomes: list[str] = []
    details: list[str | None] = []
    status = report["status"]
    for plan in plans:
        if plan.invalid:
            outcomes.append(ERROR)
            details.append(plan.invalid)
            continue
        outcome, detail = verdict(plan, next(runnable))
        if status == "ok" and detail and detail.startswith("MemoryError"):
            status = "memory_exceeded"
        outcomes.append(outcome)
        details.append(clean_text(detail))
    if stop_on_first_failure:
        stop_after_first_failure(outcomes, details)
    in_sandbox = [i for i, p in enumerate(plans) if p.in_sandbox]
    return TestsResult(status, outcomes, details, in_sandbox, float(report.get("run_time_s", 0.0)),
                       list(report.get("kills", [])))


def stop_after_first_failure(outcomes: list[str], details: list[str | None]) -> None:
    """Marks every test after the first that did not pass not_run, in place."""
    first = next((i for i, o in enumerate(outcomes) if o != PASS), len(outcomes))
    for i in range(first + 1, len(outcomes)):
        outcomes[i], details[i] = NOT_RUN, "not run: an earlier test failed (stop_on_first_failure)"


def verdict(plan: assertions.TestPlan, state: dict[str, Any]) -> tuple[str, str | None]:
    """One test's outcome and detail from its state in the report (`watch.TestState`'s fields)."""
    if state["state"] == "timeout":
        return TIMEOUT, state["error"]
    if state["state"] == "not_run":
        return NOT_RUN, state["error"]
    if state["state"] == "error":
        return ERROR, state["error"]
    holes = state["holes"]
    if plan.io is not None:
        return _judge_io(plan.io, holes)
    if len(holes) != len(plan.holes):
        return ERROR, "the test produced no trusted result"
    if plan.in_sandbox:
        return (PASS, None) if holes[0][0] else _failure(str(holes[0][1]))
    try:
        values = [(True, decode(h[1])) if h[0] else (False, _hole_error(h)) for h in holes]
    except Exception as exc:  # the run's frames are the candidate's to forge: nothing in them may raise here
        return ERROR, f"malformed result: {exc}"[:500]
    try:
        return (PASS, None) if assertions.evaluate(plan, values) else (FAIL, "assertion failed")
    except assertions.CheckFailed as exc:
        return FAIL, str(exc)
    except assertions.HoleFailed as exc:
        return _failure(exc.message)
    except assertions.TestExpressionError as exc:
        return ERROR, str(exc)
    except Exception as exc:  # a bug of the judge's must cost one test, never the request (a 500)
        return ERROR, f"the judge failed: {type(exc).__name__}: {exc}"[:500]


def _judge_io(test: dict[str, Any], holes: list[Any]) -> tuple[str, str | None]:
    """The run's stdout or return value against the expected output, which never left this process."""
    if len(holes) != 1:
        return ERROR, "the test produced no trusted result"
    if not holes[0][0]:
        return _failure(str(holes[0][1]))
    try:
        value = decode(holes[0][1])
        if test["kind"] == "stdio":
            reason = io_tests.compare_stdout(value, test["output"], test["compare"])
        else:
            reason = io_tests.compare_return(value, test["output"])
    except Exception as exc:  # forged frames must not raise here
        return ERROR, f"malformed result: {exc}"[:500]
    return (PASS, None) if reason is None else (FAIL, reason)


def _hole_error(hole: list[Any]) -> assertions.HoleError:
    classes = hole[2] if len(hole) > 2 else []
    return assertions.HoleError(str(hole[1]), tuple(str(c) for c in classes))


def _failure(message: str) -> tuple[str, str]:
    """An exception inside the test: AssertionError is a wrong answer, anything else an error."""
    if message.startswith("AssertionError"):
        return FAIL, message
    if message.startswith("ModuleNotFoundError"):
        reason = message.split(":", 1)[1].strip()
        return ERROR, reason if reason.startswith("missing dependency") else f"missing dependency: {reason}"
    return ERROR, message
