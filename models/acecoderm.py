"""AceCodeRM in torch: the Qwen2 base model plus the value head, and nothing else.

The seed's forward also ran the LM head (vocab 152,064) and upcast those logits to fp32, although the score
never reads them; here the LM head is never even loaded. The score is the head at the last real token, raw.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from acecoder_reward.models.checkpoint import HEAD_PREFIX, Checkpoint, CheckpointError


class ValueHead(nn.Module):
    def __init__(self, summary: nn.Linear) -> None:
        super().__init__()
        self.summary = summary  # the checkpoint's name for it: v_head.summary.{weight,bias}


class AceCodeRM(nn.Module):
    def __init__(self, base: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.model = base
        self.v_head = ValueHead(head)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores of right-padded rows: `lengths[i]` real tokens at the start of row i.

        No attention mask on purpose: attention is causal, so a real token never sees the padding after it,
        and without a mask SDPA keeps its fast causal kernel (a padding mask keeps it off that path; the
        figures are in docs/benchmarks.md).
        """
        hidden = self.model(input_ids=input_ids, use_cache=False).last_hidden_state
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]
        return self.v_head.summary(last.to(self.v_head.summary.weight.dtype)).squeeze(-1)

    def set_attention(self, implementation: str) -> None:
        """Which attention function transformers' layers call: read from the config on every forward."""
        config: Any = self.model.config
        config._attn_implementation = implementation

    @torch.inference_mode()
    def forward_packed(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_len: int) -> torch.Tensor:
        """Scores of sequences laid end to end in one row: sequence i is `input_ids[cu_seqlens[i]:cu_seqlens[i+1]]`.

        No padding anywhere: positions restart at 0 for each sequence, and the registered packed attention
        (models.packed_attention) keeps each sequence's attention inside its own bounds. The base model's config
        must name that attention implementation (HfScorer sees to it).
        """
        lengths = cu_seqlens[1:] - cu_seqlens[:-1]
        # output_size given: no device-to-host sync to learn the total
        starts = torch.repeat_interleave(cu_seqlens[:-1], lengths, output_size=input_ids.shape[0])
        positions = torch.arange(input_ids.shape[0], device=input_ids.device) - starts
        hidden = self.model(input_ids=input_ids[None], position_ids=positions[None], use_cache=False,
                            cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens, max_length_q=max_len,
                            max_length_k=max_len).last_hidden_state[0]
        last = hidden[cu_seqlens[1:] - 1]
        return self.v_head.summary(last.to(self.v_head.summary.weight.dtype)).squeeze(-1)


def load(checkpoint: Checkpoint, *, device: str | torch.device, dtype: torch.dtype) -> AceCodeRM:
    """Base weights through transformers (shards, dtype, any of the published class names); head tensors
    read directly from the files that hold them."""
    from safetensors import safe_open
    from transformers import Qwen2Model
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists lm_head and v_head as unexpected: they are, here
    try:
        base = Qwen2Model.from_pretrained(str(checkpoint.path), dtype=dtype, attn_implementation="sdpa")
    finally:
        hf_logging.set_verbosity(verbosity)
    hidden = base.config.hidden_size
    head = nn.Linear(hidden, 1, bias=True)
    state = {}
    for name, file in checkpoint.head_files.items():
        with safe_open(str(file), framework="pt") as f:
            state[name.removeprefix(HEAD_PREFIX)] = f.get_tensor(name)
    if tuple(state["weight"].shape) != (1, hidden) or tuple(state["bias"].shape) != (1,):
        raise CheckpointError(f"{checkpoint.path}: value head has shape {tuple(state['weight'].shape)}, "
                              f"expected (1, {hidden})")
    head.load_state_dict(state)
    return AceCodeRM(base, head).to(device=device, dtype=dtype).eval()
