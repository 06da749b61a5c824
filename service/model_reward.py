"""The AceCodeRM reward: (question, response) -> prompt tokens -> micro-batcher -> backend -> raw score.

`model_rewarder()` builds the whole chain from settings, in reading order, for the app's lifespan: the
checkpoint's tokenizer and chat template, the backend (vLLM over HTTP, or the in-process `hf` scorer), the
batcher. The gateway tokenizes once for every backend, so the batcher's token budget, the context check and the
cache key all see exactly what the model computes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from acecoder_reward.models.prompt import PromptEncoder, PromptTooLong
from acecoder_reward.service.errors import InvalidRequest
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.rm_backends import InProcessBackend, ScoreBackend, VllmBackend
from acecoder_reward.service.rm_batcher import BatchLimits, MicroBatcher
from acecoder_reward.service.settings import Settings

log = logging.getLogger(__name__)
ENCODE_INLINE_MAX = 8  # more inputs than this are tokenized off the event loop


@dataclass(frozen=True)
class ModelInput:
    question: str
    program: str  # the raw response ('chat' format) or the extracted code ('training' format)
    first_test: str | None = None


class ModelRewarder:
    def __init__(self, encoder: PromptEncoder, batcher: MicroBatcher, backend: ScoreBackend) -> None:
        self.encoder = encoder
        self.batcher = batcher
        self.backend = backend

    async def scores(self, inputs: Sequence[ModelInput]) -> list[float]:
        if len(inputs) > ENCODE_INLINE_MAX:
            ids = await asyncio.to_thread(self._encode_all, inputs)
        else:
            ids = self._encode_all(inputs)
        return await self.batcher.score_many(ids)

    def _encode_all(self, inputs: Sequence[ModelInput]) -> list[list[int]]:
        out = []
        for n, i in enumerate(inputs):
            try:
                out.append(self.encoder.encode(i.question, i.program, i.first_test))
            except PromptTooLong as exc:
                raise InvalidRequest(f"items.{n}.response: {exc} (ACECODER_RM_OVERLONG=truncate cuts it instead)",
                                     field=f"items.{n}.response") from exc
        return out

    def health(self) -> tuple[bool, dict[str, object]]:
        return self.backend.health()


@asynccontextmanager
async def model_rewarder(settings: Settings, metrics: Metrics) -> AsyncIterator[ModelRewarder | None]:
    """The configured reward-model chain, or None when ACECODER_RM_BACKEND=none."""
    if settings.rm_backend == "none" or not settings.rm_model:
        yield None
        return
    tokenizer, config = await asyncio.to_thread(_tokenizer_and_config, settings.rm_model)
    backend = await _backend(settings, metrics, tokenizer)
    try:
        max_tokens = settings.rm_max_model_len
        if not max_tokens and isinstance(backend, VllmBackend):
            max_tokens = await backend.max_model_len() or 0
        max_tokens = max_tokens or int(getattr(config, "max_position_embeddings", 32768))
        encoder = PromptEncoder(tokenizer, max_tokens=max_tokens, fmt=settings.rm_prompt_format,
                                overlong=settings.rm_overlong)
        batcher = MicroBatcher(backend, _limits(settings), metrics)
        batcher.start()
        log.info("reward model: %s via %s, context %d tokens", settings.rm_model, backend.name, max_tokens)
        try:
            yield ModelRewarder(encoder, batcher, backend)
        finally:
            await batcher.stop()
    finally:
        await backend.aclose()


def _limits(settings: Settings) -> BatchLimits:
    return BatchLimits(max_items=settings.rm_max_batch_items, max_tokens=settings.rm_max_batch_tokens,
                       max_wait_s=settings.rm_max_wait_ms / 1000, max_inflight=settings.rm_max_inflight_batches,
                       max_pending=settings.rm_max_pending, cache_items=settings.rm_cache_items)


def _tokenizer_and_config(name_or_path: str) -> tuple[Any, Any]:
    """Only the tokenizer and config files are fetched here: a vLLM-backed gateway never needs the weights."""
    from transformers import AutoConfig, AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path), AutoConfig.from_pretrained(name_or_path)


async def _backend(settings: Settings, metrics: Metrics, tokenizer: Any) -> ScoreBackend:
    assert settings.rm_model is not None
    if settings.rm_backend == "vllm":
        return VllmBackend(settings.vllm_urls(), settings.vllm_served_model or settings.rm_model,
                           timeout_s=settings.rm_upstream_timeout_s, retries=settings.rm_upstream_retries,
                           metrics=metrics)
    from acecoder_reward.models.checkpoint import inspect
    from acecoder_reward.models.hf_backend import BatchPlan, HfScorer

    checkpoint = await asyncio.to_thread(inspect, settings.rm_model)
    plan = BatchPlan(max_batch_tokens=settings.rm_max_batch_tokens, max_batch_rows=settings.rm_max_batch_items)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    fused = {"auto": None, "on": True, "off": False}[settings.rm_hf_compile]
    scorer = await asyncio.to_thread(HfScorer.load, checkpoint, plan=plan, pad_token_id=pad, fused=fused)
    await asyncio.to_thread(scorer.warm_up)  # compilation and kernel choice before the first request, not in it
    return InProcessBackend(scorer, metrics)
