"""One item's test reward, end to end: extract the code, plan the tests, run in the sandbox, judge.

This is the seam the gateway (embedded pool) and, later, the queue worker share: `TestExecutor.execute`
takes the raw response and tests and returns a `TestsResult`. The expected values stay in this process;
only the program and the candidate-side hole expressions travel to the zygote.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sandbox_worker import assertions, extract, judge
from sandbox_worker.pool import SandboxPool


@dataclass(frozen=True)
class Limits:
    """Limits for one program, already capped by the server's maxima."""

    test_timeout_s: float
    program_timeout_s: float
    memory_mb: int
    max_processes: int
    max_open_files: int
    max_file_bytes: int
    max_output_bytes: int
    max_result_bytes: int


@dataclass
class ItemResult:
    code: str | None
    tests: judge.TestsResult


class TestExecutor:
    def __init__(self, pool: SandboxPool, allowed_modules: list[str]) -> None:
        self.pool = pool
        self.allowed_modules = allowed_modules
        # One parser thread: CPython 3.11's ast.parse is not safe in several threads at once (it can raise
        # "SystemError: AST constructor recursion depth mismatch"), and parsing must stay off the event loop.
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    async def execute(self, response: str, tests: list[str], limits: Limits) -> ItemResult:
        # Parsing untrusted text is CPU work: keep it off the event loop.
        loop = asyncio.get_running_loop()
        code, plans = await loop.run_in_executor(self._parser, _prepare, response, tests)
        if code is None:
            return ItemResult(None, judge.not_run("no_code", len(tests), "no code found in the response"))
        runnable = [p for p in plans if not p.invalid]
        if not runnable:
            return ItemResult(code, judge.judge(plans, {"status": "ok", "tests": []}))
        job: dict[str, Any] = {
            "code": code,
            "tests": [{"holes": list(p.holes), "in_sandbox": p.in_sandbox} for p in runnable],
            "limits": limits.__dict__,
            "allowed_modules": self.allowed_modules,
        }
        report = await self.pool.run(job)
        if report["status"] == "infra_error":
            return ItemResult(code, judge.not_run("infra_error", len(tests), str(report.get("error"))))
        return ItemResult(code, judge.judge(plans, report))


def _prepare(response: str, tests: list[str]) -> tuple[str | None, list[assertions.TestPlan]]:
    plans = [_plan(t) for t in tests]
    names: set[str] = set()
    for test in tests:
        names |= _called_names(test)
    return extract.extract_code(response, names), plans


# A problem's tests come back with every one of its N sampled responses: plan each test once. Plans are
# immutable (the judge only reads them), so sharing them between requests is safe.
_plan = functools.lru_cache(maxsize=65536)(assertions.plan_test)


@functools.lru_cache(maxsize=65536)
def _called_names(test: str) -> frozenset[str]:
    return frozenset(extract.called_names([test]))
