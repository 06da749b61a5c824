"""TRL (GRPOTrainer) reward functions backed by the reward service, sync and async.

    from acecoder_reward_client.trl import tests_reward, async_tests_reward
    trainer = GRPOTrainer(..., reward_funcs=[tests_reward(url="http://rewards:8000")])

The dataset needs a column with the tests (`tests` by default: a list of asserts or its JSON text); prompts and
completions may be plain text or conversations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from acecoder_reward_client._shared import async_client, service_url, sync_client, tests_of, text_of
from acecoder_reward_client.types import Item, Reward, TestsReward

RewardFunc = Callable[..., list[float]]
AsyncRewardFunc = Callable[..., Awaitable[list[float]]]


def _items(prompts: list[Any], completions: list[Any], columns: dict[str, Any], tests_column: str,
           reward: Reward) -> list[Item]:
    tests = columns.get(tests_column)
    if reward != "model" and tests is None:
        raise ValueError(f"the dataset has no {tests_column!r} column with the tests")
    return [Item(response=text_of(c, "assistant"), question=text_of(p, "user"),
                 tests=tests_of(tests[n]) if reward != "model" and tests is not None else [])
            for n, (p, c) in enumerate(zip(prompts, completions, strict=True))]


def tests_reward(url: str | None = None, *, reward: Reward = "tests", tests_reward: TestsReward = "binary",
                 tests_column: str = "tests") -> RewardFunc:
    """A reward function `f(prompts, completions, **columns) -> list[float]`."""
    resolved = service_url(url)

    def acecoder_reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        items = _items(prompts, completions, columns, tests_column, reward)
        return sync_client(resolved).score(items, reward=reward, tests_reward=tests_reward).rewards

    return acecoder_reward


def async_tests_reward(url: str | None = None, *, reward: Reward = "tests", tests_reward: TestsReward = "binary",
                       tests_column: str = "tests") -> AsyncRewardFunc:
    """The same as an `async` function, for trainers that await their reward functions concurrently."""
    resolved = service_url(url)

    async def acecoder_reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        items = _items(prompts, completions, columns, tests_column, reward)
        return (await async_client(resolved).score(items, reward=reward, tests_reward=tests_reward)).rewards

    return acecoder_reward
