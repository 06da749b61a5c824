"""Benchmark: `acecoder-reward data pass-rates` in process (the embedded pool) against the Redis queue (a gateway
and 2 workers), on a HumanEval-built set with 16 completions per question.

Run: `.venv/bin/python -m loadtest.bench_data [--problems N] [--completions 16] [--concurrency C]`

In one run on one machine it:
1. builds the set: each HumanEval question with its tests and 16 completions, its canonical solution and the wrong
   variants loadtest/make_examples.py makes (a flipped operator, a bumped constant, `return None`), repeated in
   turn to fill 16;
2. runs `data pass-rates` on it in process (default settings: the pool one program per CPU, plus one), checking
   every canonical completion scores 1.0 and some variant less (a mutation may pass every test);
3. with a private redis-server and a queue-mode stack (2 workers, `--concurrency 2` each, and a gateway) started
   beforehand (idle, it only heartbeats), runs the same command with `--url` and checks the output equals the
   in-process one; --rounds times, in turn;
4. prints each run's wall time and where the CPU time went (each process's own, and its children's: the pool's
   processes and the sandboxed programs, which count where they were reaped): the CLI, and in queue mode the
   gateway and each worker; then the median rows/s and completions/s of each mode.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from loadtest.gateway_process import REPO
from loadtest.humaneval_data import load_problems
from loadtest.make_examples import variants
from loadtest.queue_processes import QueueStack, private_queue_stack


def build_rows(problems: int, completions: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for p in load_problems()[:problems]:
        wrong = variants(p, rng)
        programs = [p.solution, *(wrong[k % len(wrong)] for k in range(completions - 1))]
        rows.append({"id": p.task_id, "question": p.prompt, "test_cases": p.tests,
                     "inferences": [{"model_name": "bench", "completion_id": j, "completion": c, "pass_rate": None}
                                    for j, c in enumerate(programs)]})
    return rows


def tree_cpu_s(pid: int) -> tuple[float, float]:
    """User + system seconds of a process itself, and of its descendants: the living ones and every child reaped
    (a sandboxed program counts there, reaped by whichever process forked it)."""
    root = psutil.Process(pid)
    t = root.cpu_times()
    own, below = t.user + t.system, t.children_user + t.children_system
    for proc in root.children(recursive=True):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        below += t.user + t.system + t.children_user + t.children_system
    return own, below


def run_cli(source: Path, out: Path, concurrency: int, *service: str) -> tuple[float, tuple[float, float]]:
    """(wall seconds, CPU seconds of the CLI's process and of its descendants) for one pass-rates run."""
    command = [sys.executable, "-m", "acecoder_reward.service.cli", "data", "pass-rates", str(source), "--out",
               str(out), "--concurrency", str(concurrency), "--no-cache", *service]
    started = time.monotonic()
    proc = psutil.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = (0.0, 0.0)
    while proc.poll() is None:  # sampled: the pool's processes are gone once it exits
        try:
            cpu = max(cpu, tree_cpu_s(proc.pid), key=sum)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"pass-rates failed ({proc.returncode}):\n{stdout}\n{stderr[-3000:]}")
    return wall, cpu


def rates(path: Path) -> dict[str, list[float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["id"]: [i["pass_rate"] for i in r["inferences"]] for r in rows}


def check(got: dict[str, list[float]], questions: int) -> None:
    assert len(got) == questions, f"{len(got)} rows of {questions}"
    for rid, values in got.items():
        assert values[0] == 1.0 and min(values) < 1.0, (rid, values)  # a variant may pass every test


def queue_run(stack: QueueStack, source: Path, out: Path, concurrency: int) -> tuple[float, str]:
    """(wall seconds, where the CPU time went) for one pass-rates run through the queue."""
    assert stack.gateway is not None and stack.gateway.proc is not None
    pids = {"gateway": stack.gateway.proc.pid, **{name: p.pid for name, p in stack.workers.items()}}
    before = {name: tree_cpu_s(pid) for name, pid in pids.items()}
    wall, cli_cpu = run_cli(source, out, concurrency, "--url", stack.gateway.url)
    parts = [f"CLI {cli_cpu[0]:.1f}"]
    for name, pid in pids.items():
        own, below = (a - b for a, b in zip(tree_cpu_s(pid), before[name], strict=True))
        parts.append(f"{name} {own:.1f} + children {below:.1f}")
    return wall, ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=164)
    parser.add_argument("--completions", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4, help="the CLI's rows in flight (its default: 4)")
    parser.add_argument("--rounds", type=int, default=3, help="embedded then queue, in turn; the median is shown")
    args = parser.parse_args(argv)
    rows = build_rows(args.problems, args.completions)
    n_rows, n_items = len(rows), sum(len(r["inferences"]) for r in rows)
    walls: dict[str, list[float]] = {"embedded": [], "queue (2 workers x 2)": []}
    with (tempfile.TemporaryDirectory(prefix="bench-data-") as name,
          private_queue_stack(Path(name), "bench-data") as stack):
        tmp = Path(name)
        source = tmp / "set.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print("cache off (--no-cache): every completion runs, a repeated one too")
        print(f"set: {n_rows} questions x {args.completions} completions = {n_items}; CPUs: {psutil.cpu_count()}; "
              f"CLI --concurrency {args.concurrency}; {args.rounds} rounds")
        for n in range(args.rounds):
            wall, cli_cpu = run_cli(source, tmp / f"embedded{n}.jsonl", args.concurrency)
            embedded = rates(tmp / f"embedded{n}.jsonl")
            check(embedded, n_rows)
            walls["embedded"].append(wall)
            print(f"round {n} embedded: {wall:.1f} s; CPU s: CLI {cli_cpu[0]:.1f} + children {cli_cpu[1]:.1f}")
            wall, where = queue_run(stack, source, tmp / f"queue{n}.jsonl", args.concurrency)
            assert rates(tmp / f"queue{n}.jsonl") == embedded, "queue mode's pass rates differ from the embedded ones"
            walls["queue (2 workers x 2)"].append(wall)
            print(f"round {n} queue: {wall:.1f} s; CPU s: {where}")
    for mode, values in walls.items():
        wall = statistics.median(values)
        print(f"{mode}: median {wall:.1f} s, {n_rows / wall:.2f} rows/s, {n_items / wall:.1f} completions/s")


if __name__ == "__main__":
    main()
