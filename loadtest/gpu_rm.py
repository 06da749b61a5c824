"""GPU benchmark of the in-process (`hf`) AceCodeRM backend: tokens/s and MFU on the mixed-length workload.

Run on one H100/H200 (under 5 minutes): `python -m loadtest.gpu_rm`; on a CPU, at tiny size, to check it runs:
`python -m loadtest.gpu_rm --tiny`.

In one run it:
1. builds an AceCodeRM-7B-shaped model (Qwen2.5-Coder-7B's dims: hidden 3584, 28 layers, 28 heads, 4 KV heads,
   intermediate 18944, vocab 152064; `--size 32b` for 32B) with random weights, directly on the device, in bf16
   (fp32 on a CPU); only the base model and the value head, as the backend runs;
2. makes the workload: 256 sequences of 150-1400 random tokens, in random order (mixed lengths, as a trainer's
   responses come);
3. measures a dense matmul peak on the same device in the same run (bf16 on a GPU);
4. times four ways of batching side by side on the same model and inputs (`--variants` picks a subset):
   length-sorted batches of 32 with an attention mask (the baseline), sorted token-budget batches right-padded
   without a mask, packed sequences with no padding (eager), and packed with compiled norm/MLP/rotary kernels
   (the product on a GPU); and each one's error against an fp32 copy of the same weights on a few sequences;
5. prints tokens/s and MFU by two FLOP counts: the matmuls the backend really runs (no embedding, no LM head),
   and the count the reference figures in docs/benchmarks.md use (LM head included); writes
   loadtest/results/gpu_rm.json.
Target: at least 0.70 MFU on the mixed-length workload.
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
from typing import Any, Literal

import torch

from acecoder_reward.models import packed_attention
from acecoder_reward.models.acecoderm import AceCodeRM
from acecoder_reward.models.hf_backend import BatchPlan, HfScorer, plan_batches

REPO = Path(__file__).resolve().parent.parent
TARGET_MFU = 0.70
VARIANTS = ("masked_sorted_32", "padded", "packed", "packed_fused")


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
    """The matmul FLOPs the scorer really runs: 2 x the parameters it multiplies by (no embedding lookup, and no LM
    head, which this backend never computes)."""
    params = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    return 2.0 * params


def anchors_flop_per_token(model: AceCodeRM, shape: Shape) -> float:
    """The count the reference figures (docs/benchmarks.md) use for every method, also those that skip the head:
    2 x 7.07e9 for the 7B shape, which is the parameters without the embedding but with the LM head."""
    return flop_per_token(model) + 2.0 * shape.vocab * shape.hidden


def reference_scores(model: AceCodeRM, rows: Sequence[Sequence[int]], indices: Sequence[int]) -> list[float]:
    """Scores of a few sequences from an fp32 copy of the same weights, one sequence per forward (no padding, no
    mask): the yardstick for every bf16 path's error."""
    import copy

    ref = copy.deepcopy(model).float()
    ref.set_attention("sdpa")
    device = next(ref.parameters()).device
    scores = []
    with torch.inference_mode():
        for i in indices:
            hidden = ref.model(input_ids=torch.tensor([list(rows[i])], device=device), use_cache=False)
            scores.append(float(ref.v_head.summary(hidden.last_hidden_state[0, -1])))
    del ref
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return scores


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
    model.set_attention("sdpa")  # a packed scorer may have switched it
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


def scorer_fn(model: AceCodeRM, rows: Sequence[Sequence[int]], plan: BatchPlan, layout: Literal["packed", "padded"],
              *, fused: bool) -> Callable[[], Callable[[], list[float]]]:
    """Made when its turn comes: a scorer sets the model's attention implementation (and fusing patches it)."""
    def make() -> Callable[[], list[float]]:
        scorer = HfScorer(model, plan=plan, layout=layout, fused=fused)
        return lambda: scorer.score(rows)
    return make


def padded_in_groups(lengths: Sequence[int], rows: int) -> int:
    ordered = sorted(lengths, reverse=True)
    return sum(ordered[start] * len(ordered[start:start + rows]) for start in range(0, len(ordered), rows))


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
    parser.add_argument("--no-fused", action="store_true", help="skip the variant with compiled norm/MLP kernels")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--reference", type=int, default=16,
                        help="sequences scored by an fp32 copy as the error yardstick (0: none; it needs twice "
                             "the model's memory again)")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "gpu_rm.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = SHAPES["tiny" if args.tiny else args.size]
    log(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), {dtype}, "
        f"shape {shape}, torch {torch.__version__}")
    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 1024, 20 if device.type == "cuda" else 3)
    log(f"matmul peak {peak / 1e12:.1f} TFLOP/s")
    model = build_model(shape, device, dtype, seed=0)
    rows = workload(args.sequences, args.min_len, args.max_len, shape.vocab, seed=1)
    tokens = sum(len(r) for r in rows)
    per_token = flop_per_token(model)
    plan = BatchPlan(max_batch_tokens=args.batch_tokens, max_batch_rows=256)
    lengths = [len(r) for r in rows]
    by_length = sorted(range(len(rows)), key=lambda i: lengths[i])
    probe = by_length[:: max(1, len(rows) // args.reference)][: args.reference] if args.reference else []
    truth = reference_scores(model, rows, probe) if probe else []  # sequences across the length range
    spread = statistics.pstdev(truth) if len(truth) > 1 else 1.0
    anchors_per_token = anchors_flop_per_token(model, shape)
    figures: dict[str, Any] = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "dtype": str(dtype), "shape": shape.__dict__, "sequences": len(rows),
        "tokens": tokens, "flop_per_token": per_token, "anchors_flop_per_token": anchors_per_token,
        "peak_flop_per_s": peak, "fp32_reference": {"sequences": len(probe), "score_stdev": spread},
        "variants": {}}
    # Order matters: fusing patches the model in place, so the fused (product) variant runs last.
    variants: list[tuple[str, Callable[[], Callable[[], list[float]]], int]] = [
        ("masked_sorted_32", lambda: lambda: masked_scores(model, rows, 32, 0), padded_in_groups(lengths, 32)),
        ("padded", scorer_fn(model, rows, plan, "padded", fused=False),
         sum(len(b) * max(lengths[i] for i in b) for b in plan_batches(lengths, plan))),
        ("packed", scorer_fn(model, rows, plan, "packed", fused=False), tokens),
    ]
    variants.append(("packed_fused", scorer_fn(model, rows, plan, "packed", fused=True), tokens))
    wanted = set(args.variants.split(",")) - ({"packed_fused"} if args.no_fused else set())
    if not wanted <= set(VARIANTS):
        raise SystemExit(f"unknown variants: {sorted(wanted - set(VARIANTS))}")
    variants = [v for v in variants if v[0] in wanted]
    reference: list[float] | None = None
    for name, make, computed in variants:
        started = time.perf_counter()
        fn = make()
        wall, scores = timed(fn, device, args.repeats)
        rate = tokens / wall
        reference = reference or scores
        error = max((abs(scores[i] - t) for i, t in zip(probe, truth, strict=True)), default=0.0)
        figures["variants"][name] = {
            "wall_s": wall, "tokens_per_s": rate, "mfu": rate * per_token / peak,
            "mfu_anchors_count": rate * anchors_per_token / peak,
            "padding": computed / tokens - 1, "first_call_s": time.perf_counter() - started - wall * args.repeats,
            "max_score_difference": max(abs(a - b) for a, b in zip(scores, reference, strict=True)),
            "max_error_vs_fp32": error if probe else None,
            "max_error_vs_fp32_in_stdevs": error / spread if probe else None}
        log(f"{name}: {rate:,.0f} tokens/s, MFU {rate * per_token / peak:.3f}"
            + (f", error vs fp32 {error:.3g} ({error / spread:.3f} score stdevs)" if probe else ""))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2))  # after each variant: a cut-off run keeps its figures
    # What HfScorer picks by default here: packed where the flash varlen kernel passes its check, fused on a GPU.
    flash = packed_attention.flash_available(device, shape.heads, shape.kv_heads, shape.hidden // shape.heads, dtype)
    fused = device.type == "cuda" and not args.no_fused
    figures["product"] = "padded" if not flash else "packed_fused" if fused else "packed"

    figures["attention"] = HfScorer(model, layout="packed", fused=False).attention
    report(figures)
    args.out.write_text(json.dumps(figures, indent=2))


def report(f: dict[str, Any]) -> None:
    v = f["variants"]
    print(f"\nAceCodeRM hf backend on {f['device_name']} ({f['dtype']}, torch {f['torch']}), {f['sequences']} "
          f"sequences, {f['tokens']:,} tokens; matmul peak {f['peak_flop_per_s'] / 1e12:.1f} TFLOP/s measured in "
          f"this run; packed attention: {f['attention']}")
    print(f"  MFU counts {f['flop_per_token'] / 1e9:.3g} GFLOP/token (the matmuls run: no embedding, no LM head); "
          f"'anchors' counts {f['anchors_flop_per_token'] / 1e9:.3g} (the H200 anchors' basis, LM head included); "
          f"error: largest |score - fp32 score| over {f['fp32_reference']['sequences']} sequences, in stdevs of "
          f"those scores ({f['fp32_reference']['score_stdev']:.3g})")
    labels = {"masked_sorted_32": "sorted batches of 32, attention mask (anchors' baseline)",
              "padded": "sorted token-budget batches, right-padded, no mask",
              "packed": "packed, no padding, eager",
              "packed_fused": "packed, no padding, fused norm/MLP/rotary kernels"}
    for name, row in v.items():
        error = (f"error {row['max_error_vs_fp32']:.3g} ({row['max_error_vs_fp32_in_stdevs']:.3f} sd)"
                 if f["fp32_reference"]["sequences"] else "no fp32 reference")
        print(f"  {labels[name]:<58} {row['tokens_per_s']:>8,.0f} tokens/s  MFU {row['mfu']:.3f} (anchors "
              f"{row['mfu_anchors_count']:.3f})  padding {row['padding']:>5.1%}  {error}")
    if f["product"] not in v:
        print(f"  the product's own batching ({f['product']}) was not among the variants run")
        return
    product, base = v[f["product"]], v.get("masked_sorted_32")
    against = f"{product['tokens_per_s'] / base['tokens_per_s']:.2f}x the baseline" if base else "no baseline run"
    print(f"  product = {f['product']}: {against}; "
          f"target MFU >= {TARGET_MFU}: {'met' if product['mfu'] >= TARGET_MFU else 'NOT met'} by the FLOPs run, "
          f"{'met' if product['mfu_anchors_count'] >= TARGET_MFU else 'NOT met'} by the anchors' count")


if __name__ == "__main__":
    main()
