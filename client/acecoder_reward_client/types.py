"""Typed requests and results of `POST /v1/rewards` (the service's README documents every field)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Reward = Literal["tests", "model", "combined"]
TestsReward = Literal["pass_rate", "binary"]
Compare = Literal["tokens", "lines", "exact"]
# Asserts; an input/output object {"inputs", "outputs", "fn_name"?} (APPS/TACO `input_output`, verl's
# `ground_truth`) or CodeContests' {"input", "output"}, also as JSON text; LiveCodeBench's list of
# {"input", "output", "testtype"}.
Tests = list[str] | list[dict[str, Any]] | dict[str, Any] | str


@dataclass(frozen=True)
class Item:
    response: str
    tests: Tests = field(default_factory=list)
    question: str | None = None
    fn_name: str | None = None  # LiveCodeBench functional tests: the function (or Solution method) they call
    compare: Compare | None = None  # input/output tests: how stdout is compared (the service's default: tokens)
    test_imports: list[str] = field(default_factory=list)  # MBPP: import lines run before each assert

    def to_json(self) -> dict[str, Any]:
        tests = list(self.tests) if isinstance(self.tests, (list, tuple)) else self.tests
        out: dict[str, Any] = {"response": self.response, "tests": tests}
        if self.question is not None:
            out["question"] = self.question
        if self.fn_name is not None:
            out["fn_name"] = self.fn_name
        if self.compare is not None:
            out["compare"] = self.compare
        if self.test_imports:
            out["test_imports"] = list(self.test_imports)
        return out


@dataclass(frozen=True)
class Limits:
    test_timeout_s: float | None = None
    program_timeout_s: float | None = None
    memory_mb: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class TestsResult:
    status: str
    passed: int
    total: int
    pass_rate: float
    outcomes: list[str]
    details: list[str | None]
    judged_in_sandbox: list[int]
    run_time_s: float
    untrusted_tests: str = "count"  # how judged_in_sandbox tests counted (servers before it counted them)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestsResult:
        """Fields this client does not know (a newer server's) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ItemResult:
    reward: float
    code: str | None
    tests: TestsResult | None
    model_score: float | None
    cached: bool = False  # the outcomes came from the server's test-result cache

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemResult:
        tests = data.get("tests")
        model = data.get("model")
        return cls(reward=float(data["reward"]), code=data.get("code"),
                   tests=TestsResult.from_json(tests) if tests else None,
                   model_score=float(model["score"]) if model else None, cached=bool(data.get("cached", False)))


@dataclass(frozen=True)
class RewardResult:
    rewards: list[float]
    items: list[ItemResult]
