"""Typed requests and results of `POST /v1/rewards` (the service's README documents every field)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Reward = Literal["tests", "model", "combined"]
TestsReward = Literal["pass_rate", "binary"]


@dataclass(frozen=True)
class Item:
    response: str
    tests: list[str] = field(default_factory=list)
    question: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"response": self.response, "tests": list(self.tests)}
        if self.question is not None:
            out["question"] = self.question
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemResult:
        tests = data.get("tests")
        model = data.get("model")
        return cls(reward=float(data["reward"]), code=data.get("code"),
                   tests=TestsResult.from_json(tests) if tests else None,
                   model_score=float(model["score"]) if model else None)


@dataclass(frozen=True)
class RewardResult:
    rewards: list[float]
    items: list[ItemResult]
