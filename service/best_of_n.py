"""Best-of-N: rank N candidate responses to one question, by the reward model, by tests, or by tests with the
model breaking ties, on top of the ordinary reward path (so the candidates share the sandbox pool and the
reward model's batches with everything else)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from acecoder_reward.service import protocol
from acecoder_reward.service.errors import InvalidRequest
from acecoder_reward.service.rewards import RewardService

RankBy = Literal["model", "tests", "tests_then_model"]
Reward = Literal["tests", "model", "combined"]
REWARD_FOR: dict[RankBy, Reward] = {"model": "model", "tests": "tests", "tests_then_model": "combined"}


def rank(rank_by: RankBy, pass_rates: Sequence[float] | None, scores: Sequence[float] | None) -> list[int]:
    """Indices best first; stable, so among equals the earlier candidate wins."""
    n = len(pass_rates if pass_rates is not None else scores or [])

    def key(i: int) -> tuple[float, float]:
        rate = pass_rates[i] if pass_rates is not None and rank_by != "model" else 0.0
        score = scores[i] if scores is not None and rank_by != "tests" else 0.0
        return (-rate, -score)

    return sorted(range(n), key=key)


class BestOfN:
    def __init__(self, rewards: RewardService) -> None:
        self.rewards = rewards

    def default_rank_by(self, request: protocol.BestOfNRequest) -> RankBy:
        if request.rank_by is not None:
            return request.rank_by
        if not request.tests:
            return "model"
        return "tests_then_model" if self.rewards.model is not None else "tests"

    async def choose(self, request: protocol.BestOfNRequest) -> protocol.BestOfNResponse:
        rank_by = self.default_rank_by(request)
        if rank_by != "model" and not request.tests:
            raise InvalidRequest(f"tests: rank_by={rank_by} needs tests", field="tests")
        reward = REWARD_FOR[rank_by]
        items = [protocol.RewardItem(question=request.question, response=c, tests=request.tests)
                 for c in request.candidates]
        try:
            result = await self.rewards.score(protocol.RewardRequest(items=items, reward=reward,
                                                                     limits=request.limits,
                                                                     untrusted_tests=request.untrusted_tests,
                                                                     cache=request.cache))
        except InvalidRequest as exc:  # named in this request's terms: items.3.response -> candidates.3
            field = _as_candidates(exc.field)
            message = exc.message
            if exc.field and field and message.startswith(f"{exc.field}:"):
                message = field + message[len(exc.field):]
            raise InvalidRequest(message, field=field) from exc
        pass_rates = [i.tests.pass_rate for i in result.items if i.tests] if reward != "model" else None
        scores = [i.model.score for i in result.items if i.model] if reward != "tests" else None
        ranking = rank(rank_by, pass_rates, scores)
        return protocol.BestOfNResponse(rank_by=rank_by, chosen=ranking[0], ranking=ranking, scores=scores,
                                        pass_rates=pass_rates, items=result.items)


def _as_candidates(field: str | None) -> str | None:
    """items.N.response -> candidates.N; items.N.tests.K -> tests.K; items -> candidates; reward -> rank_by."""
    if field == "reward":
        return "rank_by"
    if field is None or not field.startswith("items"):
        return field
    parts = field.split(".")
    if len(parts) >= 3 and parts[2] == "tests":
        return ".".join(["tests", *parts[3:]])
    if len(parts) >= 3 and parts[2] == "question":
        return "question"
    return ".".join(["candidates", *parts[1:2]])
