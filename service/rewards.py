"""The reward logic behind `POST /v1/rewards`: limits, admission, fan-out to the sandbox, reward rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sandbox_worker.executor import ItemResult, Limits
from service import protocol
from service.errors import InvalidRequest, Overloaded
from service.metrics import Metrics
from service.settings import Settings


class Executor(Protocol):
    """Where test jobs run: the embedded pool (`TestExecutor`) or Redis-queued workers (`QueuedExecutor`)."""

    async def execute_many(self, items: Sequence[tuple[str, list[str]]], limits: Limits) -> list[ItemResult]: ...

    def health(self) -> tuple[bool, dict[str, object]]: ...


class RewardService:
    def __init__(self, executor: Executor, settings: Settings, metrics: Metrics) -> None:
        self.executor = executor
        self.settings = settings
        self.metrics = metrics
        self._pending = 0

    async def score(self, request: protocol.RewardRequest) -> protocol.RewardResponse:
        self._check_sizes(request)
        limits = self.limits_for(request.limits)
        self._admit(len(request.items))
        try:
            results = await self.executor.execute_many([(i.response, i.tests) for i in request.items], limits)
        finally:
            self._release(len(request.items))
        items = [self._item_out(r, request.tests_reward) for r in results]
        return protocol.RewardResponse(rewards=[i.reward for i in items], items=items)

    def limits_for(self, requested: protocol.LimitsIn | None) -> Limits:
        """Request limits, capped by the server's maxima; defaults follow the seed."""
        s = self.settings
        req = requested or protocol.LimitsIn()
        return Limits(
            test_timeout_s=min(req.test_timeout_s or s.default_test_timeout_s, s.max_test_timeout_s),
            program_timeout_s=min(req.program_timeout_s or s.default_program_timeout_s, s.max_program_timeout_s),
            memory_mb=min(req.memory_mb or s.default_memory_mb, s.max_memory_mb),
            max_processes=s.sandbox_max_processes, max_open_files=s.sandbox_max_open_files,
            max_file_bytes=s.sandbox_max_file_bytes,
            max_output_bytes=s.sandbox_max_output_bytes, max_result_bytes=s.sandbox_max_result_bytes)

    def _check_sizes(self, request: protocol.RewardRequest) -> None:
        s = self.settings
        if len(request.items) > s.max_items_per_request:
            raise InvalidRequest(f"at most {s.max_items_per_request} items per request", field="items")
        for n, item in enumerate(request.items):
            if len(item.response) > s.max_response_chars:
                raise InvalidRequest(f"response longer than {s.max_response_chars} characters",
                                     field=f"items.{n}.response")
            if len(item.tests) > s.max_tests_per_item:
                raise InvalidRequest(f"at most {s.max_tests_per_item} tests per item", field=f"items.{n}.tests")
            for k, test in enumerate(item.tests):
                if len(test) > s.max_test_chars:
                    raise InvalidRequest(f"test longer than {s.max_test_chars} characters",
                                         field=f"items.{n}.tests.{k}")

    def _admit(self, count: int) -> None:
        if self._pending + count > self.settings.max_pending_items:
            self.metrics.rejected.labels("overloaded").inc()
            raise Overloaded(f"more than {self.settings.max_pending_items} items pending; retry later")
        self._pending += count
        self.metrics.pending_items.set(self._pending)

    def _release(self, count: int) -> None:
        self._pending -= count
        self.metrics.pending_items.set(self._pending)

    def _item_out(self, result: ItemResult, rule: str) -> protocol.ItemOut:
        t = result.tests
        self.metrics.programs.labels(t.status).inc()
        self.metrics.program_seconds.observe(t.run_time_s)
        for outcome in t.outcomes:
            self.metrics.test_outcomes.labels(outcome).inc()
        for reason in t.kills:
            self.metrics.sandbox_kills.labels(reason).inc()
        reward = t.pass_rate if rule == "pass_rate" else float(t.total > 0 and t.passed == t.total)
        tests = protocol.TestsOut(
            status=t.status, passed=t.passed, total=t.total, pass_rate=t.pass_rate, outcomes=t.outcomes,
            details=t.details, judged_in_sandbox=t.judged_in_sandbox, run_time_s=t.run_time_s)
        return protocol.ItemOut(reward=reward, code=result.code, tests=tests)
