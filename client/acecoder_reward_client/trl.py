"""TRL (GRPOTrainer) reward functions backed by the reward service, sync and async.

    from acecoder_reward_client.trl import tests_reward, async_tests_reward
    trainer = GRPOTrainer(..., reward_funcs=[tests_reward(url="http://rewards:8000")])

The dataset needs a column with the tests (`tests` by default): a list of asserts, an input/output object
({"inputs", "outputs", "fn_name"?}, APPS/TACO's `input_output`), LiveCodeBench's list of tests, or the JSON text
of any of these; `fn_name`, `compare` and `test_imports` columns, where the dataset has them, go along. A row
without tests (a math row of a mixed dataset) gets None, TRL's "not mine" reward. Prompts and completions may be
plain text or conversations.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from acecoder_reward_client._shared import ITEM_FIELDS, async_client, read_tests, service_url, sync_client, text_of
from acecoder_reward_client.types import Item, Reward, RewardResult, TestsReward

RewardFunc = Callable[..., list[float | None]]
AsyncRewardFunc = Callable[..., Coroutine[Any, Any, list[float | None]]]


def _items(prompts: list[Any], completions: list[Any], columns: dict[str, Any], tests_column: str,
           reward: Reward) -> list[Item | None]:
    """One item per sample; None for a sample without tests when the reward needs them."""
    tests = columns.get(tests_column)
    if reward != "model" and tests is None:
        raise ValueError(f"the dataset has no {tests_column!r} column with the tests")
    items: list[Item | None] = []
    for n, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        fields = read_tests(tests[n]) if tests is not None else None
        if fields is None and reward != "model":
            items.append(None)
            continue
        fields = fields or {}
        for name in ITEM_FIELDS:
            if name not in fields and columns.get(name) is not None and columns[name][n] is not None:
                fields[name] = columns[name][n]
        items.append(Item(response=text_of(c, "assistant"), question=text_of(p, "user"), **fields))
    return items


def _scored(items: Sequence[Item | None], result: RewardResult) -> list[float | None]:
    rewards = iter(result.rewards)
    return [None if item is None else next(rewards) for item in items]


def tests_reward(url: str | None = None, *, reward: Reward = "tests", tests_reward: TestsReward = "binary",
                 tests_column: str = "tests") -> RewardFunc:
    """A reward function `f(prompts, completions, **columns) -> list[float | None]`."""
    resolved = service_url(url)

    def acecoder_reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        items = _items(prompts, completions, columns, tests_column, reward)
        scored = [i for i in items if i is not None]
        if not scored:
            return [None] * len(items)
        return _scored(items, sync_client(resolved).score(scored, reward=reward, tests_reward=tests_reward))

    return acecoder_reward


def async_tests_reward(url: str | None = None, *, reward: Reward = "tests", tests_reward: TestsReward = "binary",
                       tests_column: str = "tests") -> AsyncRewardFunc:
    """The same as an `async` function, for trainers that await their reward functions concurrently."""
    resolved = service_url(url)

    async def acecoder_reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        items = _items(prompts, completions, columns, tests_column, reward)
        scored = [i for i in items if i is not None]
        if not scored:
            return [None] * len(items)
        result = await async_client(resolved).score(scored, reward=reward, tests_reward=tests_reward)
        return _scored(items, result)

    return acecoder_reward
