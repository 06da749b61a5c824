"""The reward logic behind `POST /v1/rewards`: limits, admission, fan-out to the sandbox, reward rule."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from acecoder_reward.sandbox_worker import io_tests
from acecoder_reward.sandbox_worker.executor import ItemResult, Limits, OnResult
from acecoder_reward.sandbox_worker.extract import called_names, extract_code
from acecoder_reward.sandbox_worker.judge import PASS, TestsResult
from acecoder_reward.service import protocol
from acecoder_reward.service.errors import InvalidRequest, Overloaded
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.model_reward import ModelInput, ModelRewarder
from acecoder_reward.service.settings import Settings

if TYPE_CHECKING:
    from acecoder_reward.service.result_cache import ResultCache


class Executor(Protocol):
    """Where test jobs run: the embedded pool (`TestExecutor`) or Redis-queued workers (`QueuedExecutor`)."""

    async def execute_many(self, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                           stop_on_first_failure: Sequence[bool] | None = None,
                           on_result: OnResult | None = None) -> list[ItemResult]:
        """Results in item order; `on_result(k, result)` as each item finishes."""
        ...

    def health(self) -> tuple[bool, dict[str, object]]: ...

    @property
    def profile(self) -> str | None:
        """How programs run here (`run_profile`); None while the processes that run them disagree."""
        ...


class RewardService:
    def __init__(self, executor: Executor, settings: Settings, metrics: Metrics,
                 model: ModelRewarder | None = None, cache: ResultCache | None = None) -> None:
        self.executor = executor
        self.cache = cache
        self.settings = settings
        self.metrics = metrics
        self.model = model
        self._pending = 0
        self._default_limits: Limits | None = None  # Limits is frozen: one object serves every request

    async def score(self, request: protocol.RewardRequest) -> protocol.RewardResponse:
        with_tests = request.reward in ("tests", "combined")
        with_model = request.reward in ("model", "combined")
        wires = self._check_sizes(request)
        self._check_parts(request, wires, with_tests, with_model)
        tests: list[ItemResult] | None = None
        scores: list[float] | None = None
        if with_tests and with_model:
            tests, scores = await _both(self._run_tests(request, wires), self._model_scores(request))
        elif with_tests:
            tests = await self._run_tests(request, wires)
        else:
            scores = await self._model_scores(request)
        policy = request.untrusted_tests or self.settings.untrusted_tests
        items = [self._item_out(request, n, tests[n] if tests else None, scores[n] if scores else None, policy)
                 for n in range(len(request.items))]
        # Built from this service's own values, so not validated again (model_construct): ~15 us a request.
        return protocol.RewardResponse.model_construct(rewards=[i.reward for i in items], items=items)

    async def _run_tests(self, request: protocol.RewardRequest, wires: list[list[Any]]) -> list[ItemResult]:
        """`wires`: each item's tests as the executor takes them (`wire_tests`)."""
        limits = self.limits_for(request.limits)
        self._admit(len(request.items))
        try:
            # With a binary reward one failure already decides: the rest need not run.
            binary = request.tests_reward == "binary"
            stops = [i.stop_on_first_failure or binary for i in request.items]
            items = [(i.response, t) for i, t in zip(request.items, wires, strict=True)]
            if self.cache is not None and request.cache:
                return await self.cache.execute_many(self.executor, items, limits, stops)
            self.metrics.test_cache.labels("bypass").inc(len(items))
            return await self.executor.execute_many(items, limits, stops)
        finally:
            self._release(len(request.items))

    async def _model_scores(self, request: protocol.RewardRequest) -> list[float]:
        assert self.model is not None
        training = self.settings.rm_prompt_format == "training"
        inputs = [ModelInput(question=i.question or "",
                             program=(_code_of(i) or i.response) if training else i.response,
                             first_test=_first_assert(i)) for i in request.items]
        return await self.model.scores(inputs)

    def _check_parts(self, request: protocol.RewardRequest, wires: list[list[Any]], with_tests: bool,
                     with_model: bool) -> None:
        if request.weights is not None and request.reward != "combined":
            raise InvalidRequest("weights: apply only to reward=combined", field="weights")
        if with_model and self.model is None:
            raise InvalidRequest("reward: no reward model is configured on this server (ACECODER_RM_BACKEND is "
                                 "'none'); use reward=tests", field="reward")
        for n, item in enumerate(request.items):
            if with_tests and not wires[n]:  # `[]`, or an input/output form holding no test (`"[]"`)
                raise InvalidRequest(f"items.{n}.tests: reward={request.reward} needs at least one test",
                                     field=f"items.{n}.tests")
            if with_model and not item.question:
                raise InvalidRequest(f"items.{n}.question: reward={request.reward} needs the question the response "
                                     "answers",
                                     field=f"items.{n}.question")

    def limits_for(self, requested: protocol.LimitsIn | None) -> Limits:
        """Request limits, capped by the server's maxima; defaults follow the seed."""
        if requested is None:  # most requests: the defaults, made once
            if self._default_limits is None:
                self._default_limits = self._limits(protocol.LimitsIn())
            return self._default_limits
        return self._limits(requested)

    def _limits(self, req: protocol.LimitsIn) -> Limits:
        s = self.settings
        return Limits(
            test_timeout_s=min(req.test_timeout_s or s.default_test_timeout_s, s.max_test_timeout_s),
            program_timeout_s=min(req.program_timeout_s or s.default_program_timeout_s, s.max_program_timeout_s),
            memory_mb=min(req.memory_mb or s.default_memory_mb, s.max_memory_mb),
            max_processes=s.sandbox_max_processes, max_open_files=s.sandbox_max_open_files,
            max_file_bytes=s.sandbox_max_file_bytes,
            max_output_bytes=s.sandbox_max_output_bytes, max_result_bytes=s.sandbox_max_result_bytes)

    def _check_sizes(self, request: protocol.RewardRequest) -> list[list[Any]]:
        """Checks the request's sizes against the server's limits; returns each item's tests as the executor
        takes them (`wire_tests`: input/output tests are read once, here)."""
        s = self.settings
        if len(request.items) > s.max_items_per_request:
            raise InvalidRequest(f"at most {s.max_items_per_request} items per request", field="items")
        wires: list[list[Any]] = []
        for n, item in enumerate(request.items):
            if len(item.response) > s.max_response_chars:
                raise InvalidRequest(f"response longer than {s.max_response_chars} characters",
                                     field=f"items.{n}.response")
            asserts = _asserts(item.tests)
            count = len(item.tests) if asserts else len(wire := wire_tests(item, n))
            if count > s.max_tests_per_item:
                raise InvalidRequest(f"at most {s.max_tests_per_item} tests per item", field=f"items.{n}.tests")
            if not asserts:
                wires.append(wire)
                continue  # inputs and outputs are data: the body limit bounds them
            if len(item.test_imports) > s.max_tests_per_item:
                raise InvalidRequest(f"at most {s.max_tests_per_item} test imports per item",
                                     field=f"items.{n}.test_imports")
            for k, line in enumerate(item.test_imports):
                if len(line) > s.max_test_chars:
                    raise InvalidRequest(f"test import longer than {s.max_test_chars} characters",
                                         field=f"items.{n}.test_imports.{k}")
            for k, test in enumerate(item.tests):
                if len(test) > s.max_test_chars:
                    raise InvalidRequest(f"test longer than {s.max_test_chars} characters",
                                         field=f"items.{n}.tests.{k}")
            wires.append(_with_imports(item))
        return wires

    def _admit(self, count: int) -> None:
        if self._pending + count > self.settings.max_pending_items:
            self.metrics.rejected.labels("overloaded").inc()
            raise Overloaded(f"more than {self.settings.max_pending_items} items pending; retry later")
        self._pending += count
        self.metrics.pending_items.set(self._pending)

    def _release(self, count: int) -> None:
        self._pending -= count
        self.metrics.pending_items.set(self._pending)

    def _item_out(self, request: protocol.RewardRequest, n: int, result: ItemResult | None,
                  score: float | None, policy: protocol.UntrustedPolicy) -> protocol.ItemOut:
        tests_out, tests_reward = self._tests_out(result, request.tests_reward, policy) if result else (None, 0.0)
        model_out = protocol.ModelOut.model_construct(score=score) if score is not None else None
        if request.reward == "tests":
            reward = tests_reward
        elif request.reward == "model":
            reward = score or 0.0
        else:
            weights = request.weights or protocol.Weights()
            reward = weights.tests * tests_reward + weights.model * (score or 0.0)
        # The program that was run, or (training wrapping) the one the model saw; the chat format shows the
        # model the raw response, so a model-only reward ran no program: null.
        code = result.code if result else (
            _code_of(request.items[n]) if self.settings.rm_prompt_format == "training" else None)
        return protocol.ItemOut.model_construct(reward=float(reward), code=code, tests=tests_out, model=model_out,
                                              cached=bool(result and result.cached))

    def _tests_out(self, result: ItemResult, rule: str,
                   policy: protocol.UntrustedPolicy) -> tuple[protocol.TestsOut, float]:
        t = result.tests
        self.metrics.programs.labels(t.status).inc()
        if not result.cached:
            self.metrics.program_seconds.observe(t.run_time_s)
        for outcome, count in Counter(t.outcomes).items():  # one labelled update per outcome, not per test
            self.metrics.test_outcomes.labels(outcome).inc(count)
        for reason in t.kills:
            self.metrics.sandbox_kills.labels(reason).inc()
        untrusted = len(t.judged_in_sandbox)
        if untrusted:
            self.metrics.tests_judged.labels("sandbox").inc(untrusted)
        if t.total > untrusted:
            self.metrics.tests_judged.labels("trusted").inc(t.total - untrusted)
        passed, total, status = counted(t, policy)
        pass_rate = passed / total if total else 0.0
        reward = pass_rate if rule == "pass_rate" else float(total > 0 and passed == total)
        tests = protocol.TestsOut.model_construct(
            status=status, passed=passed, total=total, pass_rate=float(pass_rate), outcomes=t.outcomes,  # type: ignore[arg-type]
            details=t.details, judged_in_sandbox=t.judged_in_sandbox, untrusted_tests=policy,
            run_time_s=float(t.run_time_s))
        return tests, reward


def counted(t: TestsResult, policy: protocol.UntrustedPolicy) -> tuple[int, int, str]:
    """(passed, total, status) as the reward counts them under the untrusted-tests policy: a test judged
    inside the candidate's process never adds reward under exclude or fail."""
    if policy == "count" or not t.judged_in_sandbox:
        return t.passed, t.total, t.status
    untrusted = set(t.judged_in_sandbox)
    trusted_passed = sum(1 for i, o in enumerate(t.outcomes) if o == PASS and i not in untrusted)
    if policy == "fail":
        return trusted_passed, t.total, t.status
    total = t.total - len(untrusted)
    return trusted_passed, total, t.status if total else "all_tests_untrusted"


def _first_assert(item: protocol.RewardItem) -> str | None:
    return item.tests[0] if isinstance(item.tests, list) and item.tests and isinstance(item.tests[0], str) else None


def _asserts(tests: object) -> bool:
    return isinstance(tests, list) and all(isinstance(t, str) for t in tests)


def wire_tests(item: protocol.RewardItem, n: int) -> list[Any]:
    """An item's tests as the executor takes them: assert sources, or io_tests' wire dicts."""
    if not _asserts(item.tests):
        if item.test_imports:
            raise InvalidRequest(f"items.{n}.test_imports: only for assert tests", field=f"items.{n}.test_imports")
        try:
            return io_tests.from_spec(item.tests, item.fn_name, item.compare)
        except io_tests.IOTestsError as exc:
            raise InvalidRequest(f"items.{n}.tests: {exc}", field=f"items.{n}.tests") from exc
    return _with_imports(item)


def _with_imports(item: protocol.RewardItem) -> list[str]:
    """MBPP rows put the tests' imports in a list of their own: each test gets them in front."""
    assert isinstance(item.tests, list)
    if not item.test_imports:
        return item.tests  # type: ignore[return-value]
    head = "\n".join(item.test_imports)
    return [f"{head}\n{test}" for test in item.tests]


async def _both(tests: Awaitable[list[ItemResult]],
                models: Awaitable[list[float]]) -> tuple[list[ItemResult], list[float]]:
    """Both parts at once; the first to fail cancels the other and its error is the request's."""
    tests_task, model_task = asyncio.ensure_future(tests), asyncio.ensure_future(models)
    try:
        return await asyncio.gather(tests_task, model_task)
    except BaseException:
        tests_task.cancel()
        model_task.cancel()
        raise


def _code_of(item: protocol.RewardItem) -> str | None:
    if not _asserts(item.tests):
        return extract_code(item.response, {item.fn_name} if item.fn_name else None)
    return extract_code(item.response, called_names(item.tests) if item.tests else None)  # type: ignore[arg-type]
