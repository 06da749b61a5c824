"""`POST /get_reward`, driven with exactly the JSON OpenRLHF's trainer sends (one sample per request, many at
once), against the real gateway: tests rewards from JSON labels and dataset keys, model and combined rewards
through the in-process reward model, and the errors a misconfigured trainer gets."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from acecoder_reward.service.openrlhf import question_of, split_query
from loadtest.humaneval_data import Problem
from tests.conftest import Gateway

SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def chat_prompt(question: str) -> str:
    """What OpenRLHF's dataset prep makes of a question with a Qwen chat template (generation prompt on)."""
    return f"{SYSTEM}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def wrong(p: Problem) -> str:
    return f"def {p.entry_point}(*args, **kwargs):\n    return None\n"


@pytest.fixture(scope="module")
def problems(humaneval_subset: list[Problem]) -> list[Problem]:
    return humaneval_subset


@pytest.fixture(scope="module")
def rm_gateway(hf_dataset_gateway: Gateway) -> Gateway:
    return hf_dataset_gateway


def test_split_query_by_prompt_or_by_marker() -> None:
    prompt = chat_prompt("Add two numbers.")
    query = prompt + "def add(a, b):\n    return a + b<|im_end|>\n<|endoftext|>"
    assert split_query(query, prompt) == (prompt, "def add(a, b):\n    return a + b")
    assert split_query(query, None) == (prompt, "def add(a, b):\n    return a + b")
    assert question_of(prompt) == "Add two numbers."
    assert question_of("plain prompt\n") == "plain prompt"
    with pytest.raises(ValueError, match="assistant marker"):
        split_query("no markers at all", "another prompt")


def _openrlhf_call(url: str, query: str, prompt: str, label: str, **extra: object) -> httpx.Response:
    # The body OpenRLHF's remote reward function posts: one sample, three parallel lists.
    return httpx.post(url + "/get_reward", json={"query": [query], "prompts": [prompt], "labels": [label], **extra},
                      timeout=180)


def test_concurrent_one_sample_requests_get_the_binary_test_reward(gateway: Gateway, problems: list[Problem]) -> None:
    calls = []
    for p in problems:
        prompt = chat_prompt(p.prompt)
        label = json.dumps(p.tests)
        calls.append((prompt + f"```python\n{p.solution}\n```<|im_end|>", prompt, label, 1.0))
        calls.append((prompt + wrong(p) + "<|im_end|>", prompt, label, 0.0))
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda c: _openrlhf_call(gateway.url, c[0], c[1], c[2]), calls))
    for (_, _, _, expected), answer in zip(calls, answers, strict=True):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["rewards"] == body["scores"] == [expected]
        assert (body["extra_logs"]["pass_rate"][0] == 1.0) == (expected == 1.0)
        assert "model_score" not in body["extra_logs"]


def test_many_samples_in_one_request_and_pass_rate_override(gateway: Gateway, problems: list[Problem]) -> None:
    p = problems[0]
    prompt = chat_prompt(p.prompt)
    wrong = f"assert not ({p.tests[0].removeprefix('assert ')})"  # split like the others, and false
    half = p.tests[: len(p.tests) // 2] + [wrong] * (len(p.tests) - len(p.tests) // 2)
    body = {"query": [prompt + p.solution, prompt + p.solution], "prompts": [prompt, prompt],
            "labels": [json.dumps(p.tests), json.dumps({"tests": half, "question": "q"})],
            "tests_reward": "pass_rate"}
    answer = httpx.post(gateway.url + "/get_reward", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rewards"] == [1.0, (len(p.tests) // 2) / len(p.tests)]


@pytest.mark.parametrize(("body", "field"), [
    ({"query": ["a", "b"], "prompts": ["a"], "labels": ["[]", "[]"]}, "prompts"),
    ({"query": ["no markers"], "prompts": ["other"], "labels": ['["assert True"]']}, "query.0"),
    ({"query": [chat_prompt("q") + "x"], "labels": ["some-task-id"]}, "labels.0"),
    ({"query": [chat_prompt("q") + "x"], "labels": ["[1, 2]"]}, "labels.0"),
    ({"query": [chat_prompt("q") + "x"], "labels": ["[not json"]}, "labels.0"),
    ({"query": [chat_prompt("q") + "x"]}, "labels.0"),
    ({"query": [chat_prompt("q") + "x"], "labels": ['["assert True"]'], "reward": "model"}, "reward"),
    ({"query": []}, "query"),
    ({"query": [chat_prompt("q") + "x"] * 1025, "labels": ['["assert True"]'] * 1025}, "query"),
    ({"query": [chat_prompt("q") + "x"], "labels": [json.dumps(["assert 1"] * 513)]}, "labels.0"),
])
def test_bad_calls_name_the_field(gateway: Gateway, body: dict, field: str) -> None:
    answer = httpx.post(gateway.url + "/get_reward", json=body, timeout=30)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


# --- with a reward model and a dataset ---------------------------------------------------------------------------


def _model_score(gw: Gateway, question: str, response: str) -> float:
    answer = httpx.post(gw.url + "/v1/rewards", json={"items": [{"question": question, "response": response}],
                                                      "reward": "model"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return float(answer.json()["rewards"][0])


def test_dataset_keys_and_the_servers_combined_reward(rm_gateway: Gateway, problems: list[Problem]) -> None:
    p = problems[1]
    prompt = chat_prompt(p.prompt)
    answer = _openrlhf_call(rm_gateway.url, prompt + p.solution + "<|im_end|>", prompt, p.task_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    score = _model_score(rm_gateway, p.prompt, p.solution)  # the dataset's question, the response as written
    assert body["extra_logs"]["model_score"][0] == pytest.approx(score, abs=1e-4)
    assert body["rewards"][0] == pytest.approx(1.0 + 0.5 * score, abs=1e-4)
    model_only = _openrlhf_call(rm_gateway.url, prompt + p.solution, prompt, p.task_id, reward="model").json()
    assert model_only["rewards"][0] == pytest.approx(score, abs=1e-4)
    assert "pass_rate" not in model_only["extra_logs"]


def test_concurrent_one_sample_requests_share_model_batches(rm_gateway: Gateway, problems: list[Problem]) -> None:
    def batches() -> float:
        text = httpx.get(rm_gateway.url + "/metrics").text
        return float(re.search(r"^acecoder_rm_batch_items_count (\S+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]

    before = batches()
    prompts = [chat_prompt(p.prompt + f"\n# variant {k}") for p in problems for k in range(2)]
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda pr: _openrlhf_call(rm_gateway.url, pr + "x = 1", pr, "[]", reward="model"),
                                prompts))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200][:2]
    assert batches() - before < len(prompts)  # batched across requests
