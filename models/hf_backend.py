"""The in-process scorer (`ACECODER_RM_BACKEND=hf`): AceCodeRM on this machine's torch, for machines without vLLM.

Input is token ids (the gateway tokenizes once, for every backend). Two layouts of a batch:
- `packed` (the default on a GPU with FlashAttention's varlen kernel): sequences laid end to end in one row with
  no padding at all, attention kept inside each sequence by that kernel (models.packed_attention). Every matmul
  works on real tokens only, so a mix of lengths costs nothing extra; batches are cut only by the token budget
  and the row limit.
- `padded`: sequences sorted by length and cut into batches of similar lengths, right-padded, no attention mask
  (causal attention never looks at the padding after a token), each scored at its own last token. The default
  elsewhere: on a CPU, one big packed row with per-sequence attention measured about half as fast.
bf16 on a GPU, fp32 on the CPU (CPU bf16 matmuls are slow and lossy).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from acecoder_reward.models import acecoderm, fused_ops, packed_attention
from acecoder_reward.models.checkpoint import Checkpoint

Layout = Literal["packed", "padded"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPlan:
    max_batch_tokens: int = 16384  # tokens per forward: real ones when packed, rows x longest row when padded
    max_batch_rows: int = 64
    max_pad_share: float = 0.1  # padded only: a row shorter than (1 - this) x the batch's longest starts a new batch


def plan_batches(lengths: Sequence[int], plan: BatchPlan) -> list[list[int]]:
    """Indices grouped into batches, longest first. A batch closes when its padded size would pass the token
    budget, at the row limit, or when the next row would be padded by more than `max_pad_share` of the
    longest (short rows in a batch of long ones waste the most). A sequence longer than the budget still gets
    a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * longest > plan.max_batch_tokens or len(current) >= plan.max_batch_rows
                        or lengths[i] < longest * (1 - plan.max_pad_share)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def plan_packed(lengths: Sequence[int], plan: BatchPlan) -> list[list[int]]:
    """Indices grouped into packed batches: at most `max_batch_tokens` real tokens and `max_batch_rows`
    sequences each (a longer sequence gets a batch of its own). Longest first, so the big batches come first and
    the last one holds the short leftovers; order inside a batch costs nothing when nothing is padded."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in order:
        if current and (tokens + lengths[i] > plan.max_batch_tokens or len(current) >= plan.max_batch_rows):
            batches.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    if current:
        batches.append(current)
    return batches


class HfScorer:
    """Owns its model: it sets the base model's attention implementation to what its layout needs and, with
    `fused` (default: on a GPU), swaps in compiled kernels for the norms and the MLP activation (models.fused_ops;
    the first batches then pay a few seconds of compilation)."""

    def __init__(self, model: acecoderm.AceCodeRM, *, plan: BatchPlan | None = None, pad_token_id: int = 0,
                 layout: Layout | None = None, fused: bool | None = None) -> None:
        self.model = model
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.plan = plan or BatchPlan()
        self.pad_token_id = pad_token_id
        config: Any = model.model.config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        flash = packed_attention.flash_available(self.device, heads, config.num_key_value_heads, head_dim, self.dtype)
        if layout is None:
            layout = "packed" if flash else "padded"
        self.layout: Layout = layout
        if layout == "packed":
            packed_attention.register()
            model.set_attention(packed_attention.NAME)
            self.attention = "flash varlen" if flash else "SDPA per sequence"
        else:
            model.set_attention("sdpa")
            self.attention = "SDPA causal, padded"
        self.fused = self.device.type == "cuda" if fused is None else fused
        if self.fused:
            fused_ops.fuse(model)

    @classmethod
    def load(cls, checkpoint: Checkpoint, *, device: str | None = None, plan: BatchPlan | None = None,
             pad_token_id: int = 0, layout: Layout | None = None, fused: bool | None = None) -> HfScorer:
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
        model = acecoderm.load(checkpoint, device=target, dtype=dtype)
        scorer = cls(model, plan=plan, pad_token_id=pad_token_id, layout=layout, fused=fused)
        log.info("hf backend: %s on %s (%s, %s batches, attention %s, fused kernels %s)", checkpoint.path, target,
                 dtype, scorer.layout, scorer.attention, "on" if scorer.fused else "off")
        return scorer

    def warm_up(self) -> None:
        """Run a small batch of two lengths and one single sequence, so compiled kernels and attention kernels
        are built before the first real batch waits on them."""
        self.score([[self.pad_token_id] * 24, [self.pad_token_id] * 7])
        self.score([[self.pad_token_id] * 13])

    def score(self, token_ids: Sequence[Sequence[int]]) -> list[float]:
        """One raw score per sequence, in input order."""
        if any(len(ids) == 0 for ids in token_ids):
            raise ValueError("cannot score an empty sequence")
        scores = [0.0] * len(token_ids)
        lengths = [len(ids) for ids in token_ids]
        packed = self.layout == "packed"
        for batch in (plan_packed if packed else plan_batches)(lengths, self.plan):
            rows = [token_ids[i] for i in batch]
            for i, s in zip(batch, self._forward_packed(rows) if packed else self._forward(rows), strict=True):
                scores[i] = s
        return scores

    def _forward_packed(self, rows: Sequence[Sequence[int]]) -> list[float]:
        ids = torch.as_tensor([t for r in rows for t in r], dtype=torch.long)
        cu = torch.zeros(len(rows) + 1, dtype=torch.int32)
        cu[1:] = torch.as_tensor([len(r) for r in rows]).cumsum(0)
        out = self.model.forward_packed(ids.to(self.device, non_blocking=True), cu.to(self.device),
                                        max(len(r) for r in rows))
        return out.float().cpu().tolist()

    def _forward(self, rows: Sequence[Sequence[int]]) -> list[float]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        for n, r in enumerate(rows):
            ids[n, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        out = self.model(ids.to(self.device, non_blocking=True), lengths.to(self.device))
        return out.float().cpu().tolist()
