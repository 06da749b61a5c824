"""verl reward functions backed by the reward service.

verl config (`custom_reward_function`):

    custom_reward_function:
      path: /path/to/site-packages/acecoder_reward_client/verl.py   # or a file that imports compute_score
      name: compute_score
      reward_kwargs: {url: "http://rewards:8000", tests_reward: binary}

`ground_truth` carries the tests (a list of asserts, or its JSON text); `extra_info["question"]`, when present,
is the problem statement the model reward needs.
"""

from __future__ import annotations

from typing import Any

from acecoder_reward_client._shared import service_url, sync_client, tests_of
from acecoder_reward_client.types import Item, Reward, TestsReward


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                  *, url: str | None = None, reward: Reward = "tests", tests_reward: TestsReward = "binary",
                  **_: Any) -> float:
    """One sample's reward (verl's NaiveRewardManager calls this per sample)."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], url=url, reward=reward,
                               tests_reward=tests_reward)[0]


def compute_score_batch(data_sources: list[str], solution_strs: list[str], ground_truths: list[Any],
                        extra_infos: list[dict[str, Any] | None], *, url: str | None = None,
                        reward: Reward = "tests", tests_reward: TestsReward = "binary", **_: Any) -> list[float]:
    """A whole batch in one call (verl's BatchRewardManager)."""
    items = [Item(response=s, tests=tests_of(g) if reward != "model" else [],
                  question=(e or {}).get("question")) for s, g, e in zip(solution_strs, ground_truths, extra_infos,
                                                                        strict=True)]
    return sync_client(service_url(url)).score(items, reward=reward, tests_reward=tests_reward).rewards
