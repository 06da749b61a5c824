"""Padding-free ("packed") attention for the hf backend, plugged into transformers' attention registry.

A batch of sequences is laid end to end as one row of T tokens: every linear layer, norm and MLP then runs on
real tokens only, with no padding at all, whatever the mix of lengths. Only attention has to know where one
sequence ends, and it gets that from `cu_seq_lens_q` (cumulative lengths, FlashAttention's convention), which
transformers passes through from the model's forward call to the registered attention function.

On a CUDA device this is FlashAttention's variable-length kernel as PyTorch ships it (causal per sequence,
grouped-query heads natively). Elsewhere, or where that kernel is missing, each sequence gets its own causal SDPA
call on its slice of the row: the same numbers, one kernel launch per sequence.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import torch
from torch.nn import functional as F

log = logging.getLogger(__name__)

NAME = "acecoder_packed"
_registered = False


def register() -> None:
    """Make `config._attn_implementation = NAME` usable. No mask function is registered on purpose: for a name
    without one, transformers builds no attention mask at all (a packed row needs none; the boundaries are in
    `cu_seq_lens_q`)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, packed_attention)
    _registered = True


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """query [1, H, T, D], key/value [1, KV, T, D] -> output [1, T, H, D], as transformers' interface wants."""
    cu: torch.Tensor | None = kwargs.get("cu_seq_lens_q")
    max_len: int | None = kwargs.get("max_length_q")
    if cu is None or max_len is None or query.shape[0] != 1:
        raise ValueError(f"{NAME} attention needs one packed row and cu_seq_lens_q/max_length_q")
    window = kwargs.get("sliding_window")
    if window is not None and max_len > window:
        raise ValueError(f"{NAME} attention has no sliding window; a {max_len}-token sequence needs one of {window}")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [T, heads, D]
    if q.is_cuda and flash_available(q.device, q.shape[1], k.shape[1], q.shape[2], q.dtype):
        out = _flash_varlen(q, k, v, cu, max_len, scaling)
    else:
        out = _per_sequence(q, k, v, cu, scaling)
    return out.unsqueeze(0), None


def _flash_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int,
                  scale: float | None) -> torch.Tensor:
    cu32 = cu.to(device=q.device, dtype=torch.int32)
    out = torch.ops.aten._flash_attention_forward(
        q.contiguous(), k.contiguous(), v.contiguous(), cu32, cu32, max_len, max_len, 0.0, True, False,
        scale=scale)[0]
    return out


@torch.compiler.disable  # a loop over data-dependent boundaries: run it eagerly even inside a compiled model
def _per_sequence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor,
                  scale: float | None) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for start, end in itertools.pairwise(bounds):
        qs = q[start:end].transpose(0, 1)  # [H, L, D]
        ks = k[start:end].transpose(0, 1).repeat_interleave(groups, dim=0)
        vs = v[start:end].transpose(0, 1).repeat_interleave(groups, dim=0)
        out[start:end] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale).transpose(0, 1)
    return out


_flash_ok: dict[tuple[Any, ...], bool] = {}


def flash_available(device: torch.device, heads: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> bool:
    """Whether FlashAttention's varlen kernel works for this GPU, head layout and dtype: checked once per such
    combination against per-sequence SDPA on a small problem (a kernel that is missing or wrong here falls back
    rather than failing a batch)."""
    key = (device, heads, kv_heads, head_dim, dtype)
    if key not in _flash_ok:
        _flash_ok[key] = _check_flash(*key)
    return _flash_ok[key]


def _check_flash(device: torch.device, heads: int, kv: int, dim: int, dtype: torch.dtype) -> bool:
    if device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16):
        return False
    try:
        g = torch.Generator(device=device).manual_seed(0)
        lengths = [5, 130, 1, 64]
        total = sum(lengths)
        q = torch.randn(total, heads, dim, device=device, dtype=dtype, generator=g)
        k = torch.randn(total, kv, dim, device=device, dtype=dtype, generator=g)
        v = torch.randn(total, kv, dim, device=device, dtype=dtype, generator=g)
        cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device=device)
        fast = _flash_varlen(q, k, v, cu, max(lengths), None)
        slow = _per_sequence(q, k, v, cu, None)
        error = (fast.float() - slow.float()).abs().max().item()
    except Exception as exc:  # any failure means: use the fallback
        log.warning("FlashAttention varlen kernel unavailable (%s); packed attention runs per sequence", exc)
        return False
    if error > 2e-2:
        log.warning("FlashAttention varlen kernel disagrees with SDPA (max error %.3g); packed attention runs "
                    "per sequence", error)
        return False
    return True
