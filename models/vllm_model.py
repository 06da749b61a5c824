"""AceCodeRM as a vLLM pooling model: vLLM's own Qwen2 with the value head as its one-label classifier.

Imported by vLLM only (through `models.vllm_plugin`), inside its processes. The score is the head applied to
the last token's final hidden state, raw: the classifier's activation is the identity whatever a request asks,
because a sigmoid (or a softmax over one logit, always 1.0) would destroy the reward.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from vllm.config import VllmConfig
from vllm.model_executor.layers.pooler import DispatchPooler
from vllm.model_executor.layers.pooler.activations import PoolerIdentity
from vllm.model_executor.layers.pooler.seqwise.poolers import pooler_for_classify
from vllm.model_executor.models.adapters import as_seq_cls_model
from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM

from acecoder_reward.models.checkpoint import HEAD_PREFIX

_Qwen2SeqCls = as_seq_cls_model(Qwen2ForCausalLM)  # type: ignore[type-abstract]


class AceCodeRMForScoring(_Qwen2SeqCls):  # type: ignore[misc,valid-type]
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        vllm_config.model_config.hf_config.num_labels = 1  # the score head has one output, whatever config says
        super().__init__(vllm_config=vllm_config, prefix=prefix)

    def _init_pooler(self, vllm_config: VllmConfig, prefix: str = "") -> DispatchPooler:
        super()._init_pooler(vllm_config, prefix)  # builds self.score, the head
        pooler_config = vllm_config.model_config.pooler_config
        assert pooler_config is not None  # set by `--runner pooling`
        return DispatchPooler({"classify": pooler_for_classify(pooler_config, classifier=self.score,
                                                               act_fn=PoolerIdentity())})

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return super().load_weights(_renamed(weights))


def _renamed(weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """Checkpoint names -> this model's: the value head becomes `score`; the LM head is never loaded."""
    for name, tensor in weights:
        if name.startswith("lm_head."):
            continue
        if name.startswith(HEAD_PREFIX):
            name = "score." + name.removeprefix(HEAD_PREFIX)
        yield name, tensor
