"""GPU benchmark of the in-process (`hf`) AceCodeRM backend: tokens/s and MFU on the mixed-length workload.

Run on one H100/H200 (under 5 minutes): `python -m loadtest.gpu_rm`; on a CPU, at tiny size, to check it runs:
`python -m loadtest.gpu_rm --tiny`.

In one run it:
1. builds an AceCodeRM-7B-shaped model (FACTS.md section 2 dims; `--size 32b` for 32B) with random weights,
   directly on the device, in bf16 (fp32 on a CPU); only the base model and the value head, as the backend runs;
2. makes the workload of FACTS.md section 6: 256 sequences of 150-1400 random tokens, in random order;
3. measures a dense matmul peak on the same device in the same run (bf16 on a GPU);
4. times, side by side on the same model and inputs: the product path (`HfScorer`: length-sorted batches
   under a padded-token budget, right padding, no attention mask, score at each row's last token) and the
   baseline the anchors call "length-sorted padded batches of 32" (the same sort, with an attention mask);
5. prints tokens/s and MFU (2 x non-embedding parameters FLOP per token, as FACTS.md counts it) for both,
   checks the two paths agree on every score, and writes loadtest/results/gpu_rm.json.
Anchors (FACTS.md section 6, one H200): seed's forward 0.26 MFU, length-sorted padded batches 0.53, equal
lengths without padding 0.70 eager / 0.82 compiled. Target: at least 0.70 on the mixed-length workload.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.acecoderm import AceCodeRM
from models.hf_backend import BatchPlan, HfScorer, plan_batches

REPO = Path(__file__).resolve().parent.parent
TARGET_MFU = 0.70


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int


SHAPES = {
    "7b": Shape(3584, 28, 28, 4, 18944, 152064),
    "32b": Shape(5120, 64, 40, 8, 27648, 152064),
    "tiny": Shape(256, 2, 4, 2, 512, 1024),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_model(shape: Shape, device: torch.device, dtype: torch.dtype, seed: int) -> AceCodeRM:
    """Random weights made on the device itself (a 7B model in seconds, no host copy)."""
    from transformers import Qwen2Config, Qwen2Model

    config = Qwen2Config(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.kv_heads, max_position_embeddings=32768, rms_norm_eps=1e-6)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            base = Qwen2Model(config)
            head = torch.nn.Linear(shape.hidden, 1, bias=True)
    finally:
        torch.set_default_dtype(default)
    return AceCodeRM(base, head).eval()


def workload(n: int, low: int, high: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high + 1, (n,), generator=g).tolist()
    return [torch.randint(0, vocab, (length,), generator=g).tolist() for length in lengths]


def flop_per_token(model: AceCodeRM) -> float:
    params = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    return 2.0 * params


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """Best FLOP/s of a square matmul on this device, in this run."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - started))
    return best


def masked_scores(model: AceCodeRM, rows: Sequence[Sequence[int]], batch_rows: int, pad: int) -> list[float]:
    """The anchors' baseline: length-sorted batches of `batch_rows`, padded, with an attention mask."""
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
    scores = [0.0] * len(rows)
    with torch.inference_mode():
        for start in range(0, len(order), batch_rows):
            batch = order[start:start + batch_rows]
            width = max(len(rows[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for n, i in enumerate(batch):
                ids[n, :len(rows[i])] = torch.tensor(rows[i])
                mask[n, :len(rows[i])] = 1
            hidden = model.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 use_cache=False).last_hidden_state
            lengths = mask.sum(1).to(device)
            last = hidden[torch.arange(len(batch), device=device), lengths - 1]
            out = model.v_head.summary(last).squeeze(-1).float().cpu().tolist()
            for i, s in zip(batch, out, strict=True):
                scores[i] = s
    return scores


def timed(fn: Callable[[], list[float]], device: torch.device, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up: kernels chosen, allocator primed
    walls = []
    result: list[float] = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        result = fn()
        sync(device)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["7b", "32b"], default="7b")
    parser.add_argument("--tiny", action="store_true", help="tiny shape on the CPU in fp32 (a check that it runs)")
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--min-len", type=int, default=150)
    parser.add_argument("--max-len", type=int, default=1400)
    parser.add_argument("--batch-tokens", type=int, default=32768, help="padded tokens per forward (product path)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the base model (dynamic shapes)")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "gpu_rm.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = SHAPES["tiny" if args.tiny else args.size]
    log(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), {dtype}, "
        f"shape {shape}")
    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 1024, 20 if device.type == "cuda" else 3)
    log(f"matmul peak {peak / 1e12:.1f} TFLOP/s")
    model = build_model(shape, device, dtype, seed=0)
    if args.compile:
        model.model = torch.compile(model.model, dynamic=True)  # type: ignore[assignment]
    rows = workload(args.sequences, args.min_len, args.max_len, shape.vocab, seed=1)
    tokens = sum(len(r) for r in rows)
    per_token = flop_per_token(model)
    scorer = HfScorer(model, plan=BatchPlan(max_batch_tokens=args.batch_tokens, max_batch_rows=256))
    batches = plan_batches([len(r) for r in rows], scorer.plan)
    padded = sum(len(b) * max(len(rows[i]) for i in b) for b in batches)
    figures: dict[str, Any] = {
        "device": str(device), "dtype": str(dtype), "shape": shape.__dict__, "sequences": len(rows),
        "tokens": tokens, "flop_per_token": per_token, "peak_flop_per_s": peak, "compiled": args.compile,
        "product": {"batches": len(batches), "padded_tokens": padded}}
    for name, fn in [("product", lambda: scorer.score(rows)),
                     ("masked_sorted_32", lambda: masked_scores(model, rows, 32, 0))]:
        wall, scores = timed(fn, device, args.repeats)
        rate = tokens / wall
        figures.setdefault(name, {}).update({"wall_s": wall, "tokens_per_s": rate, "mfu": rate * per_token / peak})
        figures[name]["scores"] = scores
        log(f"{name}: {rate:,.0f} tokens/s, MFU {rate * per_token / peak:.3f}")
    worst = max(abs(a - b) for a, b in zip(figures["product"].pop("scores"),
                                           figures["masked_sorted_32"].pop("scores"), strict=True))
    figures["max_score_difference"] = worst
    report(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


def report(f: dict[str, Any]) -> None:
    p, m = f["product"], f["masked_sorted_32"]
    print(f"\nAceCodeRM hf backend on {f['device']} ({f['dtype']}), {f['sequences']} sequences, {f['tokens']:,} "
          f"tokens; peak {f['peak_flop_per_s'] / 1e12:.1f} TFLOP/s measured in this run")
    print(f"  product (sorted, token-budget batches, no mask): {p['tokens_per_s']:,.0f} tokens/s, MFU {p['mfu']:.3f} "
          f"({p['batches']} batches, padding {p['padded_tokens'] / f['tokens'] - 1:.1%})")
    print(f"  baseline (sorted batches of 32, attention mask): {m['tokens_per_s']:,.0f} tokens/s, MFU {m['mfu']:.3f}")
    print(f"  ratio {p['tokens_per_s'] / m['tokens_per_s']:.2f}x; target MFU >= {TARGET_MFU}: "
          f"{'met' if p['mfu'] >= TARGET_MFU else 'NOT met'}; max score difference {f['max_score_difference']:.2e}")


if __name__ == "__main__":
    main()
