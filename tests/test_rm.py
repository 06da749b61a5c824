"""AceCodeRM end to end: checkpoint loading, score parity between the vLLM plugin (a real vLLM server), the
in-process `hf` backend and a direct computation written here, and the gateway's model and combined rewards
over both backends (order, dedup, cache, admission, upstream failures, bad input)."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from acecoder_reward.models.checkpoint import CheckpointError, inspect
from acecoder_reward.models.prompt import INSTRUCTION_PREFIX, RESPONSE_PREFIX, PromptEncoder, PromptTooLong
from loadtest.vllm_process import VllmServer
from tests.conftest import REPO, Gateway, start_gateway, stop_gateway, wait_for

QUESTION = "Write a function add(a, b) that returns the sum of a and b."
PROGRAMS = [
    "def add(a, b):\n    return a + b\n",
    "def add(a, b):\n    return a - b\n",
    "```python\ndef add(a, b):\n    total = a\n    total += b\n    return total\n```",
    "def add(a, b):\n" + "".join(f"    # step {i}: check the inputs carefully before adding\n" for i in range(25))
    + "    return a + b\n",
    "x",
]
TOLERANCE = 1e-4  # fp32 everywhere


def _tokenizer(checkpoint: Path) -> Any:  # a transformers tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint)


def _chat_ids(checkpoint: Path, question: str, programs: Sequence[str]) -> list[list[int]]:
    """The model input, built here straight from AceCodeRM's published input (the chat template over [user:
    question, assistant: program], no generation prompt; https://github.com/TIGER-Lab/AceCoder), not with the
    project's encoder."""
    tok = _tokenizer(checkpoint)
    texts = [tok.apply_chat_template([{"role": "user", "content": question}, {"role": "assistant", "content": p}],
                                     tokenize=False) for p in programs]
    return [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]


def _direct_scores(checkpoint: Path, ids: Sequence[Sequence[int]]) -> list[float]:
    """Base model's final hidden state at the last token, times the head, plus its bias: one sequence at a
    time, no padding, no project code."""
    import torch
    from safetensors.torch import load_file
    from transformers import Qwen2Model

    base = Qwen2Model.from_pretrained(checkpoint, dtype=torch.float32).eval()
    tensors = load_file(checkpoint / "model.safetensors")
    weight, bias = tensors["v_head.summary.weight"][0], tensors["v_head.summary.bias"][0]
    with torch.no_grad():
        return [float(base(input_ids=torch.tensor([list(x)])).last_hidden_state[0, -1] @ weight + bias) for x in ids]


def _vllm_scores(server: VllmServer, ids: Sequence[Sequence[int]], **extra: object) -> list[float]:
    answer = httpx.post(server.url + "/classify", json={"model": server.served_model, "input": [list(x) for x in ids],
                                                          **extra}, timeout=60)
    assert answer.status_code == 200, answer.text
    return [d["probs"][0] for d in sorted(answer.json()["data"], key=lambda d: d["index"])]


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= TOLERANCE for x, y in zip(a, b, strict=True))


# --- checkpoint and backends -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_ids(tiny_checkpoint: Path) -> list[list[int]]:
    ids = _chat_ids(tiny_checkpoint, QUESTION, PROGRAMS)
    lengths = sorted(len(x) for x in ids)
    assert lengths[0] < 100 and lengths[-1] > 600, lengths  # very different lengths in one batch
    return ids


@pytest.fixture(scope="module")
def direct(tiny_checkpoint: Path, mixed_ids: list[list[int]]) -> list[float]:
    return _direct_scores(tiny_checkpoint, mixed_ids)


def test_scores_are_raw_and_distinct(direct: list[float]) -> None:
    assert len(set(direct)) == len(direct)
    assert any(s < 0 for s in direct), direct  # no sigmoid: a squashed score would lie in (0, 1)


def test_hf_backend_matches_direct_computation_single_and_batched(
        tiny_checkpoint: Path, mixed_ids: list[list[int]], direct: list[float]) -> None:
    from acecoder_reward.models.hf_backend import BatchPlan, HfScorer

    scorer = HfScorer.load(inspect(str(tiny_checkpoint)), device="cpu")
    assert scorer.layout == "padded" and not scorer.fused  # the CPU defaults
    assert _close(scorer.score(mixed_ids), direct)
    assert _close([scorer.score([x])[0] for x in mixed_ids], direct)
    small = HfScorer.load(inspect(str(tiny_checkpoint)), device="cpu", plan=BatchPlan(max_batch_tokens=1200))
    assert _close(small.score(mixed_ids), direct)  # several batches, regrouped by length


@pytest.mark.parametrize("budget", [1200, 100_000])
def test_packed_layout_matches_direct_computation(tiny_checkpoint: Path, mixed_ids: list[list[int]],
                                                  direct: list[float], budget: int) -> None:
    """Sequences laid end to end in one row (the GPU layout; per-sequence attention here on the CPU): each keeps
    its own positions and attention bounds, so the scores are those of each sequence alone."""
    from acecoder_reward.models.hf_backend import BatchPlan, HfScorer

    scorer = HfScorer.load(inspect(str(tiny_checkpoint)), device="cpu", layout="packed",
                           plan=BatchPlan(max_batch_tokens=budget))
    assert scorer.layout == "packed" and not scorer.fused
    assert _close(scorer.score(mixed_ids), direct)
    assert _close(scorer.score(mixed_ids[::-1]), direct[::-1])
    assert _close([scorer.score([x])[0] for x in mixed_ids], direct)


def test_vllm_started_beside_a_decoy_models_package_serves_acecoderm(vllm_server: VllmServer) -> None:
    """vLLM imports the plugin by its installed name in every process; a `models/` folder in the directory it
    starts from (the session server's, see conftest) does not shadow it."""
    assert vllm_server.cwd is not None and (vllm_server.cwd / "models" / "vllm_plugin.py").exists()
    assert "decoy" not in vllm_server.log_tail()
    models = httpx.get(vllm_server.url + "/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [vllm_server.served_model]


def test_vllm_plugin_matches_direct_computation_single_and_batched(
        vllm_server: VllmServer, mixed_ids: list[list[int]], direct: list[float]) -> None:
    assert _close(_vllm_scores(vllm_server, mixed_ids), direct)
    assert _close([_vllm_scores(vllm_server, [x])[0] for x in mixed_ids], direct)


def test_vllm_never_applies_an_activation(vllm_server: VllmServer, mixed_ids: list[list[int]],
                                          direct: list[float]) -> None:
    assert _close(_vllm_scores(vllm_server, mixed_ids, use_activation=True), direct)


@pytest.mark.parametrize("architecture", ["Qwen2ForCausalRM", "AceCodeRM", "Qwen2ForCausalLM"])
def test_loader_finds_the_head_by_tensor_names(tiny_checkpoint: Path, tmp_path: Path, architecture: str,
                                               mixed_ids: list[list[int]], direct: list[float]) -> None:
    from acecoder_reward.models.hf_backend import HfScorer

    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "architectures": [architecture]}))
    checkpoint = inspect(str(copy))
    assert checkpoint.architecture == architecture
    assert _close(HfScorer.load(checkpoint, device="cpu").score(mixed_ids[:2]), direct[:2])


def test_checkpoint_without_a_head_is_refused(tmp_path: Path) -> None:
    from acecoder_reward.models.fixture import TinyShape, build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path / "lm", shape=TinyShape(vocab_size=300), with_head=False,
                                 architecture="Qwen2ForCausalLM")
    with pytest.raises(CheckpointError, match=r"no value head \(v_head\.summary\.weight"):
        inspect(str(path))
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        inspect(str(tmp_path / "lm" / "config.json"))


def test_plugin_registration_is_idempotent() -> None:
    from vllm import ModelRegistry

    from acecoder_reward.models import vllm_plugin

    vllm_plugin.register()
    vllm_plugin.register()
    assert set(vllm_plugin.ARCHITECTURES) <= set(ModelRegistry.get_supported_archs())


# --- prompt ----------------------------------------------------------------------------------------------------


def test_training_wrapping_holds_the_question_first_test_and_fenced_program(tiny_checkpoint: Path) -> None:
    encoder = PromptEncoder(_tokenizer(tiny_checkpoint), max_tokens=1024, fmt="training")
    text = encoder.render(QUESTION, "def add(a, b):\n    return a + b", "assert add(1, 2) == 3")
    assert f"{INSTRUCTION_PREFIX}\n```\n{QUESTION}\nassert add(1, 2) == 3\n```\n<|im_end|>" in text
    assert f"{RESPONSE_PREFIX}\n```python\ndef add(a, b):\n    return a + b\n```\n<|im_end|>\n" in text
    assert not text.rstrip().endswith("<|im_start|>assistant")  # no generation prompt


def test_overlong_input_is_refused_or_cut_keeping_the_closing_tokens(tiny_checkpoint: Path) -> None:
    tok = _tokenizer(tiny_checkpoint)
    full = PromptEncoder(tok, max_tokens=10_000).encode(QUESTION, PROGRAMS[3])
    with pytest.raises(PromptTooLong, match=f"{len(full)} tokens; the model's context is 100"):
        PromptEncoder(tok, max_tokens=100).encode(QUESTION, PROGRAMS[3])
    cut = PromptEncoder(tok, max_tokens=100, overlong="truncate").encode(QUESTION, PROGRAMS[3])
    closing = tok("<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert len(cut) == 100 and cut[:98] == full[:98] and cut[98:] == closing


# --- the gateway over both backends ----------------------------------------------------------------------------

RM_ENV = {"ACECODER_RM_MAX_PENDING": "64"}


@pytest.fixture(scope="module")
def hf_gateway(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-hf"), {
        **RM_ENV, "ACECODER_RM_BACKEND": "hf", "ACECODER_RM_MODEL": str(tiny_checkpoint)})
    yield gw
    stop_gateway(gw)


@pytest.fixture(scope="module")
def vllm_gateway(tiny_checkpoint: Path, vllm_server: VllmServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-vllm"), {
        **RM_ENV, "ACECODER_RM_BACKEND": "vllm", "ACECODER_RM_MODEL": str(tiny_checkpoint),
        "ACECODER_VLLM_URL": vllm_server.url, "ACECODER_VLLM_SERVED_MODEL": vllm_server.served_model,
        # One batch at a time and a short upstream deadline: the pause test below holds a batch in flight.
        "ACECODER_RM_MAX_INFLIGHT_BATCHES": "1", "ACECODER_RM_UPSTREAM_TIMEOUT_S": "4"})
    yield gw
    stop_gateway(gw)


@pytest.fixture(params=["hf", "vllm"])
def rm_gateway(request: pytest.FixtureRequest) -> Gateway:
    gw: Gateway = request.getfixturevalue(f"{request.param}_gateway")
    return gw


def _post(gw: Gateway, body: dict, timeout: float = 60) -> httpx.Response:
    return httpx.post(gw.url + "/v1/rewards", json=body, timeout=timeout)


def _metric(gw: Gateway, name: str) -> float:
    text = httpx.get(gw.url + "/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _model_items(programs: Sequence[str], question: str = QUESTION) -> list[dict]:
    return [{"question": question, "response": p} for p in programs]


def test_model_reward_is_the_score_in_request_order(rm_gateway: Gateway, tiny_checkpoint: Path,
                                                     mixed_ids: list[list[int]], direct: list[float]) -> None:
    order = [3, 0, 4, 1, 2, 0]
    answer = _post(rm_gateway, {"items": _model_items([PROGRAMS[i] for i in order]), "reward": "model"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert _close(body["rewards"], [direct[i] for i in order])
    assert [i["model"]["score"] for i in body["items"]] == body["rewards"]
    assert all(i["tests"] is None and i["code"] is None for i in body["items"])  # no program was run


def test_combined_reward_weighs_tests_and_score(rm_gateway: Gateway, direct: list[float]) -> None:
    items = [{**_model_items([p])[0], "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}
             for p in PROGRAMS[:2]]
    answer = _post(rm_gateway, {"items": items, "reward": "combined", "weights": {"tests": 2.0, "model": 0.5}})
    assert answer.status_code == 200, answer.text
    good, bad = answer.json()["items"]
    assert good["tests"]["pass_rate"] == 1.0 and bad["tests"]["pass_rate"] == 0.5
    assert abs(good["reward"] - (2.0 + 0.5 * direct[0])) < TOLERANCE
    assert abs(bad["reward"] - (2.0 * 0.5 + 0.5 * direct[1])) < TOLERANCE


def test_duplicates_are_computed_once_and_repeats_come_from_the_cache(rm_gateway: Gateway) -> None:
    novel = f"def add(a, b):\n    return b + a  # {time.monotonic_ns()}\n"
    before = {s: _metric(rm_gateway, f'acecoder_rm_inputs_total{{source="{s}"}}') for s in ("computed", "dedup",
                                                                                           "cache")}
    batches = _metric(rm_gateway, "acecoder_rm_batch_items_count")
    first = _post(rm_gateway, {"items": _model_items([novel] * 3), "reward": "model"}).json()["rewards"]
    second = _post(rm_gateway, {"items": _model_items([novel]), "reward": "model"}).json()["rewards"]
    assert len(set(first + second)) == 1
    after = {s: _metric(rm_gateway, f'acecoder_rm_inputs_total{{source="{s}"}}') for s in before}
    assert after["computed"] - before["computed"] == 1
    assert after["dedup"] - before["dedup"] == 2
    assert after["cache"] - before["cache"] == 1
    assert _metric(rm_gateway, "acecoder_rm_batch_items_count") == batches + 1  # one batch of the one input


@pytest.mark.parametrize(("body", "field"), [
    ({"items": [{"response": "def f(): pass"}], "reward": "model"}, "items.0.question"),
    ({"items": _model_items(["x"]), "reward": "combined"}, "items.0.tests"),
    ({"items": _model_items(["x"]), "reward": "model", "weights": {"model": 1}}, "weights"),
    ({"items": _model_items(["x"]), "reward": "combined", "weights": {"model": "1"}}, "weights.model"),
    ({"items": _model_items(["x" * 20_000]), "reward": "model"}, "items.0.response"),  # over the context
])
def test_bad_input_names_the_field(rm_gateway: Gateway, body: dict, field: str) -> None:
    answer = _post(rm_gateway, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


def test_context_length_comes_from_vllm(vllm_gateway: Gateway) -> None:
    # The checkpoint allows 4096 positions; the server was started with --max-model-len 1024.
    answer = _post(vllm_gateway, {"items": _model_items(["y = 1\n" * 400]), "reward": "model"})
    assert answer.status_code == 422 and "context is 1024" in answer.json()["error"]["message"], answer.text


def test_model_reward_without_a_backend_is_a_clear_4xx(client: httpx.Client) -> None:
    answer = client.post("/v1/rewards", json={"items": _model_items(["x"]), "reward": "model"})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "reward"
    assert "ACECODER_RM_BACKEND" in answer.json()["error"]["message"]


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_gateway_benchmark_runs_and_checks_scores(vllm_gateway: Gateway, vllm_server: VllmServer,
                                                  tiny_checkpoint: Path, client: str) -> None:
    """loadtest/bench_rm.py's measuring loop, small, on the session's servers: both sides answer, the gateway's
    scores are checked against vLLM's inside it, duplicates are deduplicated, and CPU is split by process."""
    import argparse
    import asyncio

    from transformers import AutoTokenizer

    from loadtest import bench_rm

    def dedup() -> float:  # repeats answered without computing (in flight, or from the cache on a rerun)
        return sum(v for k, v in bench_rm.gateway_metrics(vllm_gateway.url).items()
                   if 'source="dedup"' in k or 'source="cache"' in k)

    assert vllm_gateway.proc is not None
    args = argparse.Namespace(rounds=1, requests=24, client=client)
    before = dedup()
    unique, dups = asyncio.run(bench_rm.measure_all(args, vllm_server, vllm_gateway.url, vllm_gateway.proc.pid,
                                                    AutoTokenizer.from_pretrained(tiny_checkpoint)))
    assert dedup() >= before + 7  # (b)'s repeats (30% of 24) were not computed again
    for w in (unique, dups):
        assert w["direct_req_per_s"] > 0 and w["gateway_req_per_s"] > 0 and len(w["paired_ratios"]) == 1
        gateway_side = w["cpu_s_per_round"]["gateway"]
        assert gateway_side["gateway"] > 0 and any(k.startswith("vLLM:") for k in gateway_side)


@pytest.mark.parametrize("requests", [24, 100])
def test_benchmark_workload_repeats_the_share_it_claims(requests: int) -> None:
    """bench_rm's (b) reports its duplicate share from its constant: the workload must hold that share of
    repeats of earlier pairs, and (a) none; fresh text per round, the same pairs for the same seed."""
    from loadtest import bench_rm

    dups = bench_rm.workload(requests, bench_rm.DUPLICATE_SHARE, 3, 7)
    assert len(dups) == requests
    assert requests - len(set(dups)) == int(requests * bench_rm.DUPLICATE_SHARE)
    unique = bench_rm.workload(requests, 0.0, 3, 7)
    assert len(set(unique)) == requests
    assert dups == bench_rm.workload(requests, bench_rm.DUPLICATE_SHARE, 3, 7)
    assert not set(dups) & set(bench_rm.workload(requests, bench_rm.DUPLICATE_SHARE, 4, 7))


def test_past_the_admission_limit_429(rm_gateway: Gateway) -> None:
    items = _model_items([f"def add(a, b):\n    return a + b + {i} - {i}\n" for i in range(65)])
    answer = _post(rm_gateway, {"items": items, "reward": "model"})
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1", answer.text
    assert _post(rm_gateway, {"items": items[:64], "reward": "model"}).status_code == 200


def test_slow_upstream_gives_504_and_an_abandoned_input_is_never_computed(
        vllm_gateway: Gateway, vllm_server: VllmServer) -> None:
    dropped = _metric(vllm_gateway, 'acecoder_rm_inputs_total{source="dropped"}')
    batches = _metric(vllm_gateway, "acecoder_rm_batch_items_count")
    answers: list[httpx.Response] = []
    vllm_server.pause()
    try:
        held = threading.Thread(target=lambda: answers.append(_post(vllm_gateway, {
            "items": _model_items([f"held = {time.monotonic_ns()}"]), "reward": "model"})))
        held.start()
        # Its batch in flight, the only one allowed: the next input queues behind it.
        wait_for(lambda: _metric(vllm_gateway, "acecoder_rm_batch_items_count") == batches + 1, "batch in flight")
        with pytest.raises(httpx.ReadTimeout):
            _post(vllm_gateway, {"items": _model_items([f"gone = {time.monotonic_ns()}"]), "reward": "model"},
                  timeout=1.0)
        held.join(30)
    finally:
        vllm_server.resume()
    assert answers[0].status_code == 504, answers[0].text
    # dropped when the batcher takes its next batch, just after the held one failed (not before its answer)
    wait_for(lambda: _metric(vllm_gateway, 'acecoder_rm_inputs_total{source="dropped"}') >= dropped + 1,
             "abandoned input dropped", timeout_s=10)
    assert _metric(vllm_gateway, 'acecoder_rm_inputs_total{source="dropped"}') == dropped + 1
    assert _metric(vllm_gateway, "acecoder_rm_batch_items_count") == batches + 1  # and never computed
    assert _post(vllm_gateway, {"items": _model_items(["after = 1"]), "reward": "model"}).status_code == 200


def test_vllm_down_gives_503_then_recovers(vllm_gateway: Gateway, vllm_server: VllmServer) -> None:
    vllm_server.stop()
    try:
        answer = _post(vllm_gateway, {"items": _model_items([f"down = {time.monotonic_ns()}"]), "reward": "model"})
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1", answer.text
        assert "unreachable" in answer.json()["error"]["message"]
        tests_only = _post(vllm_gateway, {"items": [{"response": PROGRAMS[0], "tests": ["assert add(1, 1) == 2"]}]})
        assert tests_only.status_code == 200  # the test reward does not depend on vLLM
    finally:
        vllm_server.start()
    answer = _post(vllm_gateway, {"items": _model_items([f"back = {time.monotonic_ns()}"]), "reward": "model"})
    assert answer.status_code == 200, answer.text


# --- batching plan and the GPU benchmark's CPU mode -------------------------------------------------------------


def test_batch_plan_respects_budget_rows_and_padding() -> None:
    import random

    from acecoder_reward.models.hf_backend import BatchPlan, plan_batches

    lengths = [random.Random(n).randint(150, 1400) for n in range(300)] + [5000]
    plan = BatchPlan(max_batch_tokens=8192, max_batch_rows=16, max_pad_share=0.1)
    batches = plan_batches(lengths, plan)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 16
        assert len(batch) == 1 or len(batch) * longest <= 8192
        assert min(lengths[i] for i in batch) >= 0.9 * longest


def test_fused_kernels_fall_back_to_eager_when_compiling_fails(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """No working C++ compiler (a slim image): each compiled kernel warns once and runs eagerly, and the
    scores stay right. In a subprocess: fusing patches transformers' Qwen2 module for the whole process."""
    import os
    import subprocess
    import sys

    script = f"""
import logging
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
from acecoder_reward.models.checkpoint import inspect
from acecoder_reward.models.hf_backend import HfScorer
ck = inspect({str(tiny_checkpoint)!r})
rows = [[5, 6, 7, 8, 9], [9, 10, 11], list(range(40, 140))]
eager = HfScorer.load(ck, device="cpu").score(rows)
fused = HfScorer.load(ck, device="cpu", fused=True)
assert fused.fused
first, second = fused.score(rows), fused.score(rows)  # compiling fails in the first; the second runs eager
print("DIFF", max(abs(a - b) for scores in (first, second) for a, b in zip(eager, scores, strict=True)))
"""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                            cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING acecoder_reward.models.fused_ops")]
    assert sorted(w.split()[3] for w in warnings) == ["rms_norm", "rotary", "silu_mul"], result.stderr[-3000:]
    assert float(result.stdout.split("DIFF")[1]) < TOLERANCE


def test_packed_plan_respects_budget_and_rows() -> None:
    import itertools
    import random

    from acecoder_reward.models.hf_backend import BatchPlan, plan_packed

    lengths = [random.Random(n).randint(150, 1400) for n in range(300)] + [9000]
    batches = plan_packed(lengths, BatchPlan(max_batch_tokens=8192, max_batch_rows=16))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [9000] in [[lengths[i] for i in b] for b in batches]  # longer than the budget: alone
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or sum(lengths[i] for i in batch) <= 8192
    # nothing padded, so a batch closes only when the next sequence would not fit, or at the row limit
    for batch, after in itertools.pairwise(batches):
        assert len(batch) == 16 or sum(lengths[i] for i in batch) + lengths[after[0]] > 8192


def test_gpu_benchmark_runs_on_cpu_at_tiny_size(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "gpu_rm.json"
    result = subprocess.run([sys.executable, "-m", "loadtest.gpu_rm", "--tiny", "--sequences", "24", "--repeats", "1",
                             "--out", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu" and figures["sequences"] == 24 and figures["product"] == "padded"
    variants = figures["variants"]
    assert set(variants) == {"masked_sorted_32", "padded", "packed", "packed_fused"}
    for row in variants.values():
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] < row["mfu_anchors_count"] < 1
        # masked, unmasked, packed and compiled kernels: all the fp32 reference's scores
        assert row["max_error_vs_fp32"] < TOLERANCE and row["max_score_difference"] < TOLERANCE
    assert variants["packed"]["padding"] == 0 and variants["padded"]["padding"] > 0
    assert "MFU" in result.stdout and "target MFU" in result.stdout
