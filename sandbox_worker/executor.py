"""One item's test reward, end to end: plan the tests, run in the sandbox (which extracts the code), judge.

This is the seam the gateway's embedded pool and the queue worker share: `TestExecutor.execute`
takes the raw response and tests and returns an `ItemResult`. The expected values stay in this process;
only the response and the candidate-side hole expressions travel to the zygote.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import marshal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from acecoder_reward.sandbox_worker import assertions, extract, io_tests, judge
from acecoder_reward.sandbox_worker.pool import SandboxPool


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
    cached: bool = False  # answered from the test-result cache (service/result_cache.py), not run
    # The run profile of the queue worker that ran it; None: run by this process's own executor.
    profile: str | None = None


OnResult = Callable[[int, ItemResult], None]  # (index in the batch, its result), called as each item finishes
INLINE_TEST_CHARS = 20_000  # tests this small are planned on the event loop; bigger ones in the parser thread
INLINE_REPORT_BYTES = 64 * 1024  # reports this small are judged on the event loop; bigger ones in a thread


class TestExecutor:
    def __init__(self, pool: SandboxPool, allowed_modules: list[str], profile: str = "") -> None:
        self.pool = pool
        self.allowed_modules = allowed_modules
        self.profile: str | None = profile  # run_profile of this process's sandbox: what the result cache keys on
        self._numpy_allowed = "numpy" in allowed_modules  # the judge then evaluates numpy's comparisons
        # One parser thread: CPython 3.11's ast.parse is not safe in several threads at once (it can raise
        # "SystemError: AST constructor recursion depth mismatch"). The lock keeps inline planning on the
        # event loop from overlapping with it.
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")
        self._parse_lock = threading.Lock()

    async def execute_many(self, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                           stop_on_first_failure: Sequence[bool] | None = None,
                           on_result: OnResult | None = None) -> list[ItemResult]:
        """Items of one request run concurrently on the pool; each is judged on its own, and handed to
        `on_result(k, result)` as it finishes."""
        stops = stop_on_first_failure or [False] * len(items)

        async def one(k: int, response: str, tests: list[Any], stop: bool) -> ItemResult:
            result = await self.execute(response, tests, limits, stop)
            if on_result is not None:
                on_result(k, result)
            return result

        return list(await asyncio.gather(*(one(k, response, tests, stop)
                                           for k, ((response, tests), stop) in enumerate(zip(items, stops,
                                                                                             strict=True)))))

    def health(self) -> tuple[bool, dict[str, object]]:
        live = self.pool.live
        return live > 0, {"mode": "embedded", "zygotes": live}

    async def execute(self, response: str, tests: list[Any], limits: Limits,
                      stop_on_first_failure: bool = False) -> ItemResult:
        """`tests`: assert sources, or io_tests' wire dicts (all of one kind). `stop_on_first_failure`: the
        tests after the first that fails are not_run, and the run stops there when it can tell."""
        try:
            io_tests.check_wire(tests)
        except io_tests.IOTestsError as exc:
            return ItemResult(None, judge.not_run("infra_error", len(tests), f"malformed tests: {exc}"))
        if tests and isinstance(tests[0], dict):
            plans, names = [assertions.plan_io(t) for t in tests], frozenset(t.get("fn", "") for t in tests) - {""}
        else:
            plans, names = await self._plan(tests, self._numpy_allowed)
        runnable = [p for p in plans if not p.invalid]
        if not runnable:
            return ItemResult(None, judge.judge(plans, {"status": "ok", "tests": []}))
        job: dict[str, Any] = {
            "response": response,  # the sandbox extracts the program: hostile text never costs the gateway
            "names": sorted(names),
            "tests": [_wire_test(p) for p in runnable],
            "limits": limits.__dict__,
            "allowed_modules": self.allowed_modules,
        }
        if runnable[0].io is not None:
            job["io"] = runnable[0].io["kind"]
        on_tests = None
        if stop_on_first_failure:
            # The run stops itself at a test that raised; a wrong value only the judge can see, so the zygote
            # streams finished tests back and the first one judged not to pass stops the run.
            job["stop_on_first_failure"] = True
            for wire, plan in zip(job["tests"], runnable, strict=True):
                wire["fails_if_raised"] = plan.fails_if_raised
            on_tests = functools.partial(_any_failed, runnable)
        raw = await self.pool.run(job, on_tests)
        if raw is None:
            return ItemResult(None, judge.not_run("infra_error", len(tests), "sandbox process failed"))
        if len(raw) <= INLINE_REPORT_BYTES:
            return _judge_report(plans, raw, stop_on_first_failure)
        # Decoding and comparing megabytes of candidate data would stall every other request.
        return await asyncio.to_thread(_judge_report, plans, raw, stop_on_first_failure)

    async def _plan(self, tests: list[str], numpy: bool) -> tuple[list[assertions.TestPlan], frozenset[str]]:
        """Plans are cached, so a problem's tests are parsed once for all of its sampled responses."""
        if sum(len(t) for t in tests) <= INLINE_TEST_CHARS and self._parse_lock.acquire(blocking=False):
            try:
                return _plan_all(tests, numpy)
            finally:
                self._parse_lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._parser, self._plan_locked, tests, numpy)

    def _plan_locked(self, tests: list[str], numpy: bool) -> tuple[list[assertions.TestPlan], frozenset[str]]:
        with self._parse_lock:
            return _plan_all(tests, numpy)


def _judge_report(plans: list[assertions.TestPlan], raw: bytes, stop_on_first_failure: bool = False) -> ItemResult:
    report = marshal.loads(raw)
    return ItemResult(judge.clean_text(report.get("code")), judge.judge(plans, report, stop_on_first_failure))



async def _any_failed(runnable: list[assertions.TestPlan], raw: bytes) -> bool:
    """True when a test in the zygote's progress frame (marshal [(index, state), ...]) did not pass."""
    if len(raw) <= INLINE_REPORT_BYTES:
        return _failed_in(runnable, raw)
    return await asyncio.to_thread(_failed_in, runnable, raw)


def _failed_in(runnable: list[assertions.TestPlan], raw: bytes) -> bool:
    """Tests the judge decides on a clock never stop a run: their verdict in the final report may differ."""
    try:
        return any(judge.verdict(plan, state)[0] != judge.PASS for index, state in marshal.loads(raw)
                   if not assertions.judged_on_a_clock((plan := runnable[index]).source))
    except Exception:  # the final report is judged all the same; a frame that cannot be judged stops nothing
        return False


def _plan_all(tests: list[str], numpy: bool) -> tuple[list[assertions.TestPlan], frozenset[str]]:
    """Each test's plan, and the names the tests call. Callers hold `TestExecutor._parse_lock`."""
    planned = [_PLANS.get(t, numpy) for t in tests]
    return [plan for plan, _ in planned], frozenset().union(*(names for _, names in planned))


def _wire_test(plan: assertions.TestPlan) -> dict[str, Any]:
    if plan.io is not None:
        return {"holes": [], "in_sandbox": False, **io_tests.io_job(plan.io)}
    test: dict[str, Any] = {"holes": list(plan.holes), "in_sandbox": plan.in_sandbox}
    if plan.setup:
        test["setup"] = plan.setup
    return test


PLAN_MEMO_BYTES = 64 << 20
PLAN_BYTES_PER_CHAR = 64  # a plan (its syntax tree, holes and scope) takes ~50 bytes per character of its test


class PlanMemo:
    """Plans and called names per test, least recently used first out, bounded by an estimate of their memory
    (tests are request input: up to ACECODER_MAX_TEST_CHARS each, whose plan can take a megabyte). A problem's
    tests come back with every one of its N sampled responses: each is planned once. Plans are immutable (the
    judge only reads them), so sharing them between requests is safe. Not thread-safe: callers hold a lock."""

    def __init__(self, max_bytes: int = PLAN_MEMO_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._entries: collections.OrderedDict[tuple[str, bool], tuple[assertions.TestPlan, frozenset[str]]] = (
            collections.OrderedDict())

    def get(self, test: str, numpy: bool) -> tuple[assertions.TestPlan, frozenset[str]]:
        key = (test, numpy)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        found = (assertions.plan_test(test, numpy), frozenset(extract.called_names([test])))
        cost = _plan_cost(test)
        if cost <= self.max_bytes // 16:  # no one test may take over a sixteenth of the memo
            self._entries[key] = found
            self.used_bytes += cost
            while self.used_bytes > self.max_bytes:
                (old, _), _ = self._entries.popitem(last=False)
                self.used_bytes -= _plan_cost(old)
        return found


def _plan_cost(test: str) -> int:
    return 1024 + len(test) * PLAN_BYTES_PER_CHAR


_PLANS = PlanMemo()
