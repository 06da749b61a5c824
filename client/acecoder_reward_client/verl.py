"""verl reward functions backed by the reward service.

verl config (`custom_reward_function`):

    custom_reward_function:
      path: /path/to/site-packages/acecoder_reward_client/verl.py   # or a file that imports compute_score
      name: compute_score
      reward_kwargs: {url: "http://rewards:8000", tests_reward: binary}

`ground_truth` carries the tests: the JSON text of {"inputs", "outputs", "fn_name"?} (verl's prime_code rows,
APPS/TACO `input_output`), that object itself, a list of asserts or its JSON text, LiveCodeBench's list of tests,
or {"tests": ..., "fn_name"?, "compare"?, "test_imports"?}. `extra_info["question"]`, when present, is the problem
statement the model reward needs. Each sample's answer is a dict: `score` (the reward), and `pass_rate`,
`status`, `judged_in_sandbox` (how many of its tests were judged inside its own process), plus `model_score`
with a model reward; verl puts all but `score` into `reward_extra_info`.
"""

from __future__ import annotations

from typing import Any

from acecoder_reward_client._shared import read_tests, service_url, sync_client
from acecoder_reward_client.types import Item, ItemResult, Reward, TestsReward

UNTESTED = "untested"  # the status of a sample scored by the model alone


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                  *, url: str | None = None, reward: Reward = "tests", tests_reward: TestsReward = "binary",
                  **_: Any) -> dict[str, Any]:
    """One sample's score and figures (verl's NaiveRewardManager calls this per sample)."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], url=url, reward=reward,
                               tests_reward=tests_reward)[0]


def compute_score_batch(data_sources: list[str], solution_strs: list[str], ground_truths: list[Any],
                        extra_infos: list[dict[str, Any] | None], *, url: str | None = None,
                        reward: Reward = "tests", tests_reward: TestsReward = "binary",
                        **_: Any) -> list[dict[str, Any]]:
    """A whole batch in one call (verl's BatchRewardManager)."""
    items = [_item(s, g, e, reward) for s, g, e in zip(solution_strs, ground_truths, extra_infos, strict=True)]
    result = sync_client(service_url(url)).score(items, reward=reward, tests_reward=tests_reward)
    return [_figures(i, reward) for i in result.items]


def _item(solution: str, ground_truth: Any, extra_info: dict[str, Any] | None, reward: Reward) -> Item:
    fields = read_tests(ground_truth)
    if fields is None and reward != "model":
        raise ValueError(f"ground_truth holds no tests, and reward={reward} needs them")
    return Item(response=solution, question=(extra_info or {}).get("question"), **(fields or {}))


def _figures(item: ItemResult, reward: Reward) -> dict[str, Any]:
    """The same keys for every sample (verl stacks them into arrays), numbers where verl averages them."""
    tests = item.tests
    out: dict[str, Any] = {"score": item.reward, "pass_rate": tests.pass_rate if tests else 0.0,
                           "status": tests.status if tests else UNTESTED,
                           "judged_in_sandbox": len(tests.judged_in_sandbox) if tests else 0}
    if reward != "tests":
        out["model_score"] = item.model_score if item.model_score is not None else 0.0
    return out
