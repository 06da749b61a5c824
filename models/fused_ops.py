"""Compiled (fused) kernels for the memory-bound steps of the hf backend's forward.

Between the matmuls, eager Qwen2 spends a real share of a GPU's time on element-wise passes over the whole
activation: RMSNorm alone is five kernels in fp32 (upcast, square-mean, rsqrt, scale, downcast-times-weight),
twice per layer, the MLP's SiLU and product are two more over the 18,944-wide intermediate, and the rotary
embedding is about ten over the queries and keys. torch.compile turns each into one kernel (on an H200, 7B
shape, the packed forward went from 0.64 to 0.74 MFU). Only these small pure functions are compiled, with
dynamic shapes: one compilation serves every layer and every batch size (compiling the whole model with graph
breaks at attention would recompile per layer), in seconds rather than the minutes a whole-model compile takes.

The matmuls stay cuBLAS calls and attention stays as it is, so scores match the eager path up to bf16 rounding
(fp32 on a CPU: to ~1e-6).
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Qwen2RMSNorm's arithmetic: statistics in fp32, scale applied after the cast back. Compiled, the
    # intermediate bf16 roundings are fused away (the last bit of some elements differs from eager; against an
    # fp32 copy the fused scores came out closer, see README).
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
            unsqueeze_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    # transformers' apply_rotary_pos_emb for Qwen2, term for term.
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


class _Kernel:
    """A compiled function that falls back to its eager self for good if compiling it fails (no C compiler
    for Triton's launcher in a slim image, say): slower, never down."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name, self.eager = name, fn
        self.compiled: Callable[..., Any] | None = torch.compile(fn, dynamic=True)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            return self.eager(*args)
        try:
            return self.compiled(*args)
        except torch.OutOfMemoryError:
            raise  # the eager function would need the same memory
        except Exception as exc:  # torch.compile's failures come in many types
            # The same inputs, eagerly: if that fails too, the inputs are at fault (raise, keep compiling);
            # if it works, compilation is what broke, so it is off from now on.
            result = self.eager(*args)
            log.warning("compiled %s kernel failed (%s: %s); using the eager one from now on", self.name,
                        type(exc).__name__, str(exc)[:300])
            self.compiled = None
            return result


_compiled: dict[str, _Kernel] = {}


def _kernel(name: str, fn: Callable[..., Any]) -> _Kernel:
    if name not in _compiled:
        _compiled[name] = _Kernel(name, fn)
    return _compiled[name]


def _norm_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    return _kernel("rms_norm", _rms_norm)(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(_kernel("silu_mul", _silu_mul)(self.gate_proj(x), self.up_proj(x)))


def _fused_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  unsqueeze_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return _kernel("rotary", _rotary)(q, k, cos, sin, unsqueeze_dim)


def _fuse_rotary(attention: nn.Module) -> bool:
    """The attention module calls its modeling file's module-level `apply_rotary_pos_emb`, so that name is what
    gets replaced, for Qwen2's modeling file only and for the rest of the process: every Qwen2 model here, also
    one scored unfused later, then runs the compiled rotary (the same arithmetic up to bf16 rounding)."""
    source = sys.modules.get(type(attention).__module__)
    if source is None or not source.__name__.endswith("qwen2.modeling_qwen2"):
        return False
    if getattr(source, "apply_rotary_pos_emb", None) is not _fused_rotary:
        source.apply_rotary_pos_emb = _fused_rotary  # type: ignore[attr-defined]
    return True


def fuse(model: nn.Module) -> int:
    """Point every Qwen2 RMSNorm and SiLU MLP inside `model`, and Qwen2's rotary embedding, at the compiled
    kernels; returns how many modules changed. Anything of another shape (a different activation, say) is left
    eager."""
    changed = 0
    for module in model.modules():
        kind = type(module).__name__
        if kind == "Qwen2Attention" and _fuse_rotary(module):
            changed += 1
        if kind.endswith("RMSNorm") and hasattr(module, "variance_epsilon") and hasattr(module, "weight"):
            module.forward = types.MethodType(_norm_forward, module)  # type: ignore[method-assign]
            changed += 1
        elif (kind.endswith("MLP") and "SiLU" in type(getattr(module, "act_fn", None)).__name__
              and all(hasattr(module, p) for p in ("gate_proj", "up_proj", "down_proj"))):
            module.forward = types.MethodType(_mlp_forward, module)  # type: ignore[method-assign]
            changed += 1
    return changed
