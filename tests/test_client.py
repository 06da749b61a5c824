"""The Python client and the trainer-side reward functions (verl, TRL): against the real gateway over HTTP,
plus the retry policy behind httpx's MockTransport (the declared seam for scripted 429/503 answers); and the
client package installed alone in a fresh venv, without any of the server's dependencies."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
import venv
from pathlib import Path

import httpx
import pytest
from acecoder_reward_client import (
    AsyncRewardClient,
    InvalidRequestError,
    Item,
    Limits,
    OverloadedError,
    RetryPolicy,
    RewardClient,
    UnavailableError,
)
from acecoder_reward_client import trl as trl_rewards
from acecoder_reward_client import verl as verl_rewards

from loadtest.humaneval_data import Problem
from tests.conftest import REPO, Gateway

FAST_RETRY = RetryPolicy(max_retries=3, backoff_s=0.01, max_backoff_s=1.0)


def _items(problems: list[Problem]) -> list[Item]:
    good = [Item(response=p.solution, tests=p.tests, question=p.prompt) for p in problems]
    bad = [Item(response=f"def {p.entry_point}(*a):\n    return None\n", tests=p.tests) for p in problems]
    return [x for pair in zip(good, bad, strict=True) for x in pair]


def test_client_scores_in_order_across_chunks(gateway: Gateway, humaneval_subset: list[Problem]) -> None:
    items = _items(humaneval_subset[:10])
    with RewardClient(gateway.url, chunk_size=3) as client:
        result = client.score(items, tests_reward="binary", limits=Limits(program_timeout_s=10))
    assert result.rewards == [1.0, 0.0] * 10
    assert result.items[0].tests is not None and result.items[0].tests.status == "ok"
    assert result.items[0].model_score is None


def test_async_client_sends_chunks_concurrently(gateway: Gateway, humaneval_subset: list[Problem]) -> None:
    async def run() -> list[float]:
        async with AsyncRewardClient(gateway.url, chunk_size=4, max_concurrent_chunks=3) as client:
            return (await client.score(_items(humaneval_subset[:10]), tests_reward="binary")).rewards

    assert asyncio.run(run()) == [1.0, 0.0] * 10


def test_client_reports_cached_items_and_can_turn_the_cache_off(gateway: Gateway) -> None:
    item = Item(response=f"# {uuid.uuid4().hex}\ndef f(x):\n    return x + 1\n", tests=["assert f(1) == 2"])
    with RewardClient(gateway.url) as client:
        assert [i.cached for i in client.score([item, item]).items] == [False, True]
        assert [i.cached for i in client.score([item]).items] == [True]
        assert [i.cached for i in client.score([item, item], cache=False).items] == [False, False]

    async def run() -> list[bool]:
        async with AsyncRewardClient(gateway.url) as client:
            return [i.cached for i in (await client.score([item], cache=False)).items]
    assert asyncio.run(run()) == [False]


def test_client_raises_typed_errors_naming_the_field(gateway: Gateway) -> None:
    with RewardClient(gateway.url) as client, pytest.raises(InvalidRequestError) as info:
        client.score([Item(response="x", tests=[])])
    assert info.value.status == 422 and info.value.field == "items.0.tests"


def test_model_and_combined_rewards_through_the_client(hf_dataset_gateway: Gateway,
                                                       humaneval_subset: list[Problem]) -> None:
    p = humaneval_subset[0]
    with RewardClient(hf_dataset_gateway.url) as client:
        model = client.score([Item(response=p.solution, question=p.prompt)], reward="model")
        both = client.score([Item(response=p.solution, question=p.prompt, tests=p.tests)], reward="combined",
                            weights={"tests": 1.0, "model": 2.0})
    score = model.items[0].model_score
    assert score is not None and both.items[0].model_score == pytest.approx(score, abs=1e-4)
    assert both.rewards[0] == pytest.approx(1.0 + 2.0 * score, abs=1e-4)


# --- retries, behind a scripted transport -------------------------------------------------------------------------


def _scripted(statuses: list[int], seen: list[float]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        status = statuses.pop(0) if statuses else 200
        if status == 200:
            n = len(json.loads(request.content)["items"])
            item = {"reward": 1.0, "code": None, "tests": None, "model": {"score": 1.0}}
            return httpx.Response(200, json={"rewards": [1.0] * n, "items": [item] * n})
        return httpx.Response(status, headers={"Retry-After": "0.3"} if status == 429 else {},
                              json={"error": {"code": "overloaded" if status == 429 else "unavailable",
                                              "message": "busy"}})
    return httpx.MockTransport(handler)


def test_429_is_retried_after_the_servers_retry_after() -> None:
    seen: list[float] = []
    client = RewardClient("http://svc", retry=FAST_RETRY, transport=_scripted([429, 503], seen))
    assert client.score([Item(response="x", tests=["assert 1"])]).rewards == [1.0]
    assert len(seen) == 3 and seen[1] - seen[0] >= 0.29  # waited Retry-After, not its own 10 ms backoff


def test_retries_give_up_with_the_last_error() -> None:
    seen: list[float] = []
    client = RewardClient("http://svc", retry=FAST_RETRY, transport=_scripted([503] * 10, seen))
    with pytest.raises(UnavailableError):
        client.score([Item(response="x", tests=["assert 1"])])
    assert len(seen) == FAST_RETRY.max_retries + 1
    with pytest.raises(OverloadedError):
        RewardClient("http://svc", retry=RetryPolicy(max_retries=0), transport=_scripted([429], [])).score(
            [Item(response="x", tests=["assert 1"])])


def test_async_client_retries_429_and_503_then_gives_up_with_the_last_error() -> None:
    async def score(statuses: list[int], seen: list[float], retry: RetryPolicy = FAST_RETRY) -> list[float]:
        async with AsyncRewardClient("http://svc", retry=retry, transport=_scripted(statuses, seen)) as client:
            return (await client.score([Item(response="x", tests=["assert 1"])])).rewards

    seen: list[float] = []
    assert asyncio.run(score([429, 503], seen)) == [1.0]
    assert len(seen) == 3 and seen[1] - seen[0] >= 0.29  # waited the server's Retry-After, not 10 ms
    seen.clear()
    with pytest.raises(UnavailableError):
        asyncio.run(score([503] * 10, seen))
    assert len(seen) == FAST_RETRY.max_retries + 1
    seen.clear()
    with pytest.raises(OverloadedError):
        asyncio.run(score([429], seen, RetryPolicy(max_retries=0)))
    assert len(seen) == 1
    seen.clear()
    with pytest.raises(InvalidRequestError):  # a 4xx other than 429 is final
        asyncio.run(score([422], seen))
    assert len(seen) == 1


def test_unreachable_service_is_unavailable() -> None:
    client = RewardClient("http://127.0.0.1:9", retry=FAST_RETRY, timeout_s=2)
    with pytest.raises(UnavailableError, match="did not answer"):
        client.score([Item(response="x", tests=["assert 1"])])


# --- trainer reward functions -------------------------------------------------------------------------------------


def test_verl_compute_score(gateway: Gateway, humaneval_subset: list[Problem]) -> None:
    p = humaneval_subset[2]
    answer = verl_rewards.compute_score("acecode", f"```python\n{p.solution}\n```", json.dumps(p.tests),
                                        {"question": p.prompt}, url=gateway.url)
    assert answer == {"score": 1.0, "pass_rate": 1.0, "status": "ok", "judged_in_sandbox": 0}
    batch = verl_rewards.compute_score_batch(["acecode"] * 2, [p.solution, "no code here"], [p.tests, p.tests],
                                             [None, None], url=gateway.url)
    assert [(b["score"], b["status"]) for b in batch] == [(1.0, "ok"), (0.0, "no_code")]


def test_trl_reward_functions_sync_and_async(gateway: Gateway, humaneval_subset: list[Problem]) -> None:
    p = humaneval_subset[3]
    prompts = [[{"role": "user", "content": p.prompt}]] * 2  # conversational, as GRPOTrainer passes them
    completions = [[{"role": "assistant", "content": p.solution}], [{"role": "assistant", "content": "pass"}]]
    tests = [json.dumps(p.tests), p.tests]
    assert trl_rewards.tests_reward(gateway.url)(prompts, completions, tests=tests) == [1.0, 0.0]
    afunc = trl_rewards.async_tests_reward(gateway.url, tests_reward="pass_rate")
    assert asyncio.run(afunc([p.prompt] * 2, [p.solution, "pass"], tests=tests)) == [1.0, 0.0]
    with pytest.raises(ValueError, match="no 'tests' column"):
        trl_rewards.tests_reward(gateway.url)(prompts, completions)


# --- the client in a trainer's environment ------------------------------------------------------------------------


def test_client_installs_and_imports_without_the_servers_dependencies(tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(REPO / "client")], capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = ("import sys, acecoder_reward_client, acecoder_reward_client.verl, acecoder_reward_client.trl\n"
             "heavy = {'torch', 'vllm', 'fastapi', 'redis', 'transformers', 'service', 'models', 'sandbox_worker'}\n"
             "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n")
    result = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    assert not any(f"{dep}==" in listed for dep in ("torch", "fastapi", "redis", "vllm", "transformers"))


def test_openrlhf_custom_function(gateway: Gateway, humaneval_subset: list[Problem],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from acecoder_reward_client import openrlhf

    monkeypatch.setenv("ACECODER_REWARD_URL", gateway.url)
    p = humaneval_subset[4]
    prompt = f"<|im_start|>user\n{p.prompt}<|im_end|>\n<|im_start|>assistant\n"
    out = openrlhf.reward_func([prompt + p.solution, prompt + "pass"], [prompt, prompt], [json.dumps(p.tests)] * 2)
    assert out["rewards"].tolist() == [1.0, 0.0] and out["scores"].tolist() == [1.0, 0.0]
    assert set(out["extra_logs"]) == {"pass_rate", "no_code", "judged_in_sandbox_share"}
