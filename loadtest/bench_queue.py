"""Benchmark: queue mode (1 and 2 worker processes) against local mode, on the HumanEval canonical set.

Run: `.venv/bin/python -m loadtest.bench_queue [--rounds N] [--batch K] [--concurrency C] [--no-one-request]
[--baseline REV] [--worker-concurrency N]`

In one run on one machine it:
1. starts a private redis-server, a local-mode gateway, and two queue-mode stacks (a gateway with 1 worker,
   a gateway with 2 workers; every pool at its default size) on separate key prefixes; idle stacks only
   heartbeat, so each measurement has the machine to itself. With --baseline REV, a third queue stack (a
   gateway with 2 workers) runs REV's gateway and worker code from a worktree (the sandbox's zygotes, started
   with `python -I`, are this tree's install): old and new queue code side by side in the same rounds;
2. runs --rounds rounds; each scores the 164 programs through POST /v1/rewards on every stack in turn, in
   two shapes: C requests of K items in flight (default 4 of 41), then ONE request of all 164 items (the
   whole batch waits for its slowest item, and no second request overlaps the first's start and end); the
   order of the stacks alternates from round to round, so all see the same machine conditions; every
   program must pass. Every request sends `"cache": false`, so every program runs (the test-result cache
   would answer repeats);
3. measures the queue's added latency per job: round trip through Redis (enqueue -> result back in the
   gateway) minus the worker's own time for the job (plan, sandbox, judge), with one job at a time, from an
   in-process QueuedExecutor on the 2-worker queue; next to it, the floor: a bare Redis round trip between
   two processes with nothing behind it; and one-item HTTP request latency, queue vs local;
4. prints a report and writes it as JSON to loadtest/results/bench_queue.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
import uvloop

from acecoder_reward.service.errors import ServiceError
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.queued_executor import QueueConfig, QueuedExecutor
from acecoder_reward.service.rewards import RewardService
from acecoder_reward.service.settings import Settings
from loadtest.bench_humaneval import REQUEST_TIMEOUT_S, check_all_pass, item, items_of, machine, rate_stats, verdict
from loadtest.gateway_process import REPO, start_gateway, stop_gateway
from loadtest.humaneval_data import Problem, load_problems
from loadtest.queue_processes import QueueStack, RedisServer

THROUGHPUT_TARGET = 0.85  # queue mode with 2 workers within 15% of local mode, in either shape
ADDED_MEDIAN_TARGET_S = 0.002
# Every request's fields besides its items. Each round sends the same programs again: with the test-result
# cache on, they would be answered from it, not run.
REQUEST_FIELDS: dict[str, Any] = {"tests_reward": "binary", "cache": False}
CACHE_NOTE = "cache off: every program runs (each request sends cache=false)"
# Between bare round trips, the processes sit idle about as long as a HumanEval job runs in the sandbox, as
# they do around a real job: waking an idle process costs more than handing work to a busy one.
FLOOR_GAP_S = 0.005


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Shape:
    """`concurrency` requests of `batch` items in flight at a time."""

    concurrency: int
    batch: int

    @property
    def name(self) -> str:
        return f"{self.concurrency}x{self.batch}"

    def describe(self) -> str:
        if self.concurrency == 1:
            return f"one request of {self.batch} items at a time"
        return f"{self.concurrency} requests of {self.batch} items in flight"


@contextmanager
def baseline_source(rev: str) -> Iterator[Path]:
    """REV checked out in a detached worktree beside this repository; yields the folder to put on PYTHONPATH
    (its `src`, where `acecoder_reward` links the revision's top-level folders)."""
    worktree = REPO.parent / f"{REPO.name}-bench-queue-{rev[:12]}"
    if not worktree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), rev], cwd=REPO, check=True,
                       stdout=sys.stderr)
    yield worktree / "src"


@contextmanager
def services(work: Path, baseline: Path | None, worker_concurrency: int) -> Iterator[dict[str, Any]]:
    """The gateways by name: local, queue-1, queue-2 and, with a baseline, queue-2@base."""
    server = RedisServer(work / "redis")
    server.start()
    local = start_gateway(work / "local")
    stacks = {f"queue-{n}": (n, QueueStack(server.url, f"bench{n}", work / f"q{n}", {"ACECODER_LOG_LEVEL": "warning"}))
              for n in (1, 2)}
    if baseline is not None:  # PYTHONPATH comes before this venv's path entry for the installed tree
        stacks["queue-2@base"] = (2, QueueStack(server.url, "benchbase", work / "qbase",
                                                {"ACECODER_LOG_LEVEL": "warning", "PYTHONPATH": str(baseline)}))
    try:
        for n, stack in stacks.values():
            for _ in range(n):
                stack.start_worker(concurrency=worker_concurrency, ACECODER_LOG_LEVEL="warning")
            stack.start_gateway()
            stack.wait_workers(n)
        urls = {"local": local.url, **{name: stack.gateway.url for name, (_, stack) in stacks.items()
                                       if stack.gateway is not None}}
        yield {"redis": server, "urls": urls}
    finally:
        for _, stack in stacks.values():
            stack.stop()
        stop_gateway(local)
        server.stop()


async def score_pass(url: str, problems: Sequence[Problem], shape: Shape) -> float:
    """One pass over all programs in `shape`; returns its wall seconds. Bodies are encoded before the clock
    starts and answers parsed after it stops: the service is measured, not the client's JSON."""
    bodies = [json.dumps({"items": [item(p) for p in problems[i:i + shape.batch]], **REQUEST_FIELDS}).encode()
              for i in range(0, len(problems), shape.batch)]
    gate = asyncio.Semaphore(shape.concurrency)
    limits = httpx.Limits(max_connections=shape.concurrency, max_keepalive_connections=shape.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        async def one(body: bytes) -> tuple[int, bytes]:
            async with gate:
                answer = await client.post("/v1/rewards", content=body,
                                           headers={"Content-Type": "application/json"})
                return answer.status_code, answer.content

        await client.get("/health")  # the connection is open before the clock starts
        started = time.perf_counter()
        answers = await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - started
    check_all_pass(problems, [r for status, data in answers for r in items_of(status, data)], f"{url} {shape.name}")
    return wall


def one_item_latency(url: str, problems: Sequence[Problem], repeats: int) -> list[float]:
    """Per program, the median latency of one-item requests sent one at a time (http.client, keep-alive)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=REQUEST_TIMEOUT_S)
    medians = []
    try:
        for p in problems:
            body = json.dumps({"items": [item(p)], **REQUEST_FIELDS}).encode()
            latencies = []
            for _ in range(repeats + 1):  # the first opens the connection and warms the path: not counted
                started = time.perf_counter()
                connection.request("POST", "/v1/rewards", body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                data = answer.read()
                latencies.append(time.perf_counter() - started)
                check_all_pass([p], items_of(answer.status, data), f"one-item {p.task_id}")
            medians.append(statistics.median(latencies[1:]))
    finally:
        connection.close()
    return medians


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def added_latency(redis_url: str, prefix: str, problems: list[Problem], repeats: int) -> list[float]:
    """One job at a time through the queue; per job: round trip minus the worker's own time."""
    settings = Settings()
    executor = QueuedExecutor(QueueConfig(redis_url, prefix, max_depth=100_000, request_timeout_s=120,
                                          heartbeat_ttl_s=settings.worker_heartbeat_ttl_s,
                                          audit_interval_s=settings.queue_audit_interval_s), Metrics())
    await executor.start()
    try:
        limits = RewardService(executor, settings, Metrics()).limits_for(None)
        for p in problems[:5]:  # warm-up: connections, code paths
            await executor.execute_many([(p.solution, p.tests)], limits)
        executor.added_latency_s.clear()
        for _ in range(repeats):
            for p in problems:
                [result] = await executor.execute_many([(p.solution, p.tests)], limits)
                if result.tests.passed != result.tests.total:
                    raise ServiceError(f"{p.task_id} did not pass through the queue: {result.tests}")
        return list(executor.added_latency_s)
    finally:
        await executor.close()


def _echo_worker(url: str, stream: str, reply: str) -> None:
    """The least a queue worker can do: claim an entry, push it back, acknowledge and delete it."""
    client = redis.Redis.from_url(url)
    client.xgroup_create(stream, "g", id="0", mkstream=True)
    while True:
        answer: Any = client.xreadgroup("g", "echo", {stream: ">"}, count=1, block=1000)
        if not answer:
            continue
        entry_id, fields = answer[0][1][0]
        if fields[b"j"] == b"stop":
            return
        pipe = client.pipeline(transaction=True)
        pipe.rpush(reply, fields[b"j"])
        pipe.xack(stream, "g", entry_id)
        pipe.xdel(stream, entry_id)
        pipe.execute()


def queue_floor(url: str, jobs: int) -> list[float]:
    """Round trips through Redis with no sandbox behind it (XADD -> XREADGROUP -> RPUSH -> BLPOP between two
    processes, idle in between like around a job): what any Redis-based queue pays on this machine."""
    stream, reply = "bench-floor:jobs", "bench-floor:reply"
    echo = multiprocessing.Process(target=_echo_worker, args=(url, stream, reply))
    echo.start()
    client = redis.Redis.from_url(url)
    payload = b"x" * 1500  # about a HumanEval job
    times = []
    for _ in range(jobs + 20):
        time.sleep(FLOOR_GAP_S)
        started = time.perf_counter()
        client.xadd(stream, {"j": payload})
        client.blpop([reply], timeout=10)
        times.append(time.perf_counter() - started)
    client.xadd(stream, {"j": b"stop"})
    echo.join(10)
    client.delete(stream, reply)
    return times[20:]


def throughput_rounds(urls: dict[str, str], problems: list[Problem], shapes: list[Shape],
                      rounds: int) -> dict[str, dict[str, list[float]]]:
    """Wall seconds per shape, per gateway, per round; the gateways' order is reversed every other round."""
    walls: dict[str, dict[str, list[float]]] = {s.name: {name: [] for name in urls} for s in shapes}
    for shape in shapes:  # warm-up: connections, code paths, zygotes
        for url in urls.values():
            asyncio.run(score_pass(url, problems, shape))
    log("warm")
    for r in range(rounds):
        order = list(urls) if r % 2 == 0 else list(reversed(urls))
        for shape in shapes:
            for name in order:
                walls[shape.name][name].append(asyncio.run(score_pass(urls[name], problems, shape)))
            log(f"round {r + 1}, {shape.name}: " + ", ".join(
                f"{k} {len(problems) / v[-1]:.0f}/s" for k, v in walls[shape.name].items()))
    return walls


def paired(walls: dict[str, list[float]], name: str) -> dict[str, Any]:
    """`name` against local: the ratio of the medians, and each round's ratio (same machine weather)."""
    per_round = [local / queue for local, queue in zip(walls["local"], walls[name], strict=True)]
    return {"ratio_of_medians": statistics.median(walls["local"]) / statistics.median(walls[name]),
            "per_round": [round(x, 3) for x in per_round], "median_per_round": statistics.median(per_round)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    problems = load_problems()
    n = len(problems)
    shapes = [Shape(args.concurrency, args.batch)]
    if args.one_request:
        shapes.append(Shape(1, n))
    with ExitStack() as stack:
        baseline = stack.enter_context(baseline_source(args.baseline)) if args.baseline else None
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-queue-")))
        up = stack.enter_context(services(tmp, baseline, args.worker_concurrency))
        urls: dict[str, str] = up["urls"]
        walls = throughput_rounds(urls, problems, shapes, args.rounds)
        # On uvloop, as the gateway runs (uvicorn picks it).
        added = uvloop.run(added_latency(up["redis"].url, "bench2", problems, args.seq_repeats))
        floor = queue_floor(up["redis"].url, len(added))
        seq_local = one_item_latency(urls["local"], problems, args.seq_repeats)
        seq_queue = one_item_latency(urls["queue-2"], problems, args.seq_repeats)
    queues = [name for name in urls if name != "local"]
    return {
        "machine": machine(), "programs": n, "rounds": args.rounds, "cache": CACHE_NOTE,
        "baseline": args.baseline, "worker_concurrency": args.worker_concurrency,
        "shapes": {s.name: {"describe": s.describe(),
                            "throughput": {k: rate_stats(n, v) for k, v in walls[s.name].items()},
                            "over_local": {q: paired(walls[s.name], q) for q in queues}} for s in shapes},
        "added_latency_ms": {"median": statistics.median(added) * 1000, "p99": percentile(added, 0.99) * 1000,
                             "jobs": len(added), "floor_median": statistics.median(floor) * 1000,
                             "floor_p99": percentile(floor, 0.99) * 1000},
        "one_item_request_ms": {"local_median": statistics.median(seq_local) * 1000,
                                "queue2_median": statistics.median(seq_queue) * 1000},
    }


def print_report(f: dict[str, Any]) -> None:
    print(f"HumanEval canonical set, {f['programs']} programs, {f['rounds']} interleaved rounds; "
          f"{f['machine']['nproc']} CPUs; {f['worker_concurrency']} programs at once per worker; {f['cache']}")
    for shape in f["shapes"].values():
        print(f" {shape['describe']}:")
        for name, t in shape["throughput"].items():
            print(f"  {name:13s} {t['median_programs_per_s']:7.1f} programs/s median "
                  f"({t['best_programs_per_s']:.1f} best)")
        for name, r in shape["over_local"].items():
            line = (f"  {name} / local: {r['ratio_of_medians']:.2f} (per round: median {r['median_per_round']:.2f}, "
                    f"{', '.join(f'{x:.2f}' for x in r['per_round'])})")
            if name == "queue-2":
                line += f"; target >= {THROUGHPUT_TARGET}: {verdict(r['ratio_of_medians'] >= THROUGHPUT_TARGET)}"
            print(line)
    a = f["added_latency_ms"]
    print(f" queue's added latency per job ({a['jobs']} jobs, one at a time): median {a['median']:.2f} ms, "
          f"p99 {a['p99']:.2f} ms (target median < 2 ms: {verdict(a['median'] < ADDED_MEDIAN_TARGET_S * 1000)})")
    print(f" bare Redis round trip, no sandbox (XADD -> XREADGROUP -> RPUSH -> BLPOP, 5 ms apart): median "
          f"{a['floor_median']:.2f} ms, p99 {a['floor_p99']:.2f} ms")
    o = f["one_item_request_ms"]
    print(f" one-item HTTP request, median: local {o['local_median']:.2f} ms, queue {o['queue2_median']:.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_queue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=41, help="items per request (default 41)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--no-one-request", dest="one_request", action="store_false",
                        help="skip the second shape, one request of all 164 items")
    parser.add_argument("--baseline", metavar="REV", help="also run REV's queue code (a gateway, 2 workers)")
    parser.add_argument("--worker-concurrency", type=int, default=Settings().resolved_pool_size(),
                        help="programs each worker runs at once (default: the pool's default size, as the local "
                             "gateway's; the workers share this machine's CPUs)")
    parser.add_argument("--seq-repeats", type=int, default=2, help="passes of one-at-a-time jobs (default 2)")
    args = parser.parse_args(argv)
    if not RedisServer.available():
        sys.exit("bench_queue needs redis-server on PATH")
    started = time.monotonic()
    figures = run(args)
    print_report(figures)
    out = REPO / "loadtest" / "results" / "bench_queue.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
    log(f"done in {time.monotonic() - started:.0f} s; figures in {out}")


if __name__ == "__main__":
    main()
