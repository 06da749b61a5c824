"""The in-process scorer (`ACECODER_RM_BACKEND=hf`): AceCodeRM on this machine's torch, for machines without vLLM.

Input is token ids (the gateway tokenizes once, for every backend). Sequences are sorted by length and cut into
batches under a token budget, so each batch holds similar lengths and pads little; rows are right-padded and
scored at their own last token. bf16 on a GPU, fp32 on the CPU (CPU bf16 matmuls are slow and lossy).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models import acecoderm
from models.checkpoint import Checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPlan:
    max_batch_tokens: int = 16384  # padded tokens per forward (rows x longest row)
    max_batch_rows: int = 64
    max_pad_share: float = 0.1  # a row shorter than (1 - this) x the batch's longest starts a new batch


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


class HfScorer:
    def __init__(self, model: acecoderm.AceCodeRM, *, plan: BatchPlan | None = None, pad_token_id: int = 0) -> None:
        self.model = model
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.plan = plan or BatchPlan()
        self.pad_token_id = pad_token_id

    @classmethod
    def load(cls, checkpoint: Checkpoint, *, device: str | None = None, plan: BatchPlan | None = None,
             pad_token_id: int = 0) -> HfScorer:
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
        model = acecoderm.load(checkpoint, device=target, dtype=dtype)
        log.info("hf backend: %s on %s (%s)", checkpoint.path, target, dtype)
        return cls(model, plan=plan, pad_token_id=pad_token_id)

    def score(self, token_ids: Sequence[Sequence[int]]) -> list[float]:
        """One raw score per sequence, in input order."""
        if any(len(ids) == 0 for ids in token_ids):
            raise ValueError("cannot score an empty sequence")
        scores = [0.0] * len(token_ids)
        for batch in plan_batches([len(ids) for ids in token_ids], self.plan):
            for i, s in zip(batch, self._forward([token_ids[i] for i in batch]), strict=True):
                scores[i] = s
        return scores

    def _forward(self, rows: Sequence[Sequence[int]]) -> list[float]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        for n, r in enumerate(rows):
            ids[n, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        out = self.model(ids.to(self.device, non_blocking=True), lengths.to(self.device))
        return out.float().cpu().tolist()
