"""Benchmark: queue mode (1 and 2 worker processes) against local mode, on the HumanEval canonical set.

Run: `.venv/bin/python -m loadtest.bench_queue [--rounds N] [--batch K] [--concurrency C]`

In one run on one machine it:
1. starts a private redis-server, a local-mode gateway, and two queue-mode stacks (a gateway with 1 worker,
   a gateway with 2 workers; every pool at its default size) on separate key prefixes; idle stacks only
   heartbeat, so each measurement has the machine to itself;
2. runs --rounds rounds, each scoring the 164 programs through POST /v1/rewards on local, queue-1 and
   queue-2 in turn (interleaved, so all three see the same machine conditions); every program must pass;
3. measures the queue's added latency per job: round trip through Redis (enqueue -> result back in the
   gateway) minus the worker's own time for the job (plan, sandbox, judge), with one job at a time, from an
   in-process QueuedExecutor on the 2-worker queue; next to it, the floor: a bare Redis round trip between
   two processes with nothing behind it; and one-item HTTP request latency, queue vs local;
4. prints a report and writes it as JSON to loadtest/results/bench_queue.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import uvloop

from acecoder_reward.service.errors import ServiceError
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.queued_executor import QueueConfig, QueuedExecutor
from acecoder_reward.service.rewards import RewardService
from acecoder_reward.service.settings import Settings
from loadtest.bench_humaneval import api_sequential, api_throughput, machine, rate_stats, verdict
from loadtest.gateway_process import REPO, start_gateway, stop_gateway
from loadtest.humaneval_data import Problem, load_problems
from loadtest.queue_processes import QueueStack, RedisServer

THROUGHPUT_TARGET = 0.85  # queue mode with 2 workers within 15% of local mode
ADDED_MEDIAN_TARGET_S = 0.002
# Between bare round trips, the processes sit idle about as long as a HumanEval job runs in the sandbox, as
# they do around a real job: waking an idle process costs more than handing work to a busy one.
FLOOR_GAP_S = 0.005


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def services(work: Path) -> Iterator[dict[str, Any]]:
    redis = RedisServer(work / "redis")
    redis.start()
    local = start_gateway(work / "local")
    stacks = {n: QueueStack(redis.url, f"bench{n}", work / f"q{n}", {"ACECODER_LOG_LEVEL": "warning"})
              for n in (1, 2)}
    try:
        for n, stack in stacks.items():
            for _ in range(n):
                stack.start_worker(concurrency=Settings().resolved_pool_size(), ACECODER_LOG_LEVEL="warning")
            stack.start_gateway()
            stack.wait_workers(n)
        yield {"redis": redis, "local": local, "stacks": stacks}
    finally:
        for stack in stacks.values():
            stack.stop()
        stop_gateway(local)
        redis.stop()


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    problems = load_problems()
    n = len(problems)
    walls: dict[str, list[float]] = {"local": [], "queue-1": [], "queue-2": []}
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp, services(Path(tmp)) as up:
        urls = {"local": up["local"].url, "queue-1": up["stacks"][1].gateway.url,
                "queue-2": up["stacks"][2].gateway.url}
        for name, url in urls.items():  # warm-up
            asyncio.run(api_throughput(url, problems, 1, args.concurrency, args.batch, warm_up=False))
            log(f"warm: {name}")
        for r in range(args.rounds):
            for name, url in urls.items():
                walls[name] += asyncio.run(api_throughput(url, problems, 1, args.concurrency, args.batch,
                                                          warm_up=False))
            log(f"round {r + 1}: " + ", ".join(f"{k} {n / v[-1]:.0f}/s" for k, v in walls.items()))
        # On uvloop, as the gateway runs (uvicorn picks it).
        added = uvloop.run(added_latency(up["redis"].url, "bench2", problems, args.seq_repeats))
        floor = queue_floor(up["redis"].url, len(added))
        _, seq_local = api_sequential(urls["local"], problems, args.seq_repeats)  # httpx, as before
        _, seq_queue = api_sequential(urls["queue-2"], problems, args.seq_repeats)
    rates = {k: rate_stats(n, v) for k, v in walls.items()}
    ratio = rates["queue-2"]["median_programs_per_s"] / rates["local"]["median_programs_per_s"]
    return {
        "machine": machine(), "programs": n, "rounds": args.rounds, "batch": args.batch,
        "concurrency": args.concurrency, "throughput": rates, "queue2_over_local": ratio,
        "added_latency_ms": {"median": statistics.median(added) * 1000, "p99": percentile(added, 0.99) * 1000,
                             "jobs": len(added), "floor_median": statistics.median(floor) * 1000,
                             "floor_p99": percentile(floor, 0.99) * 1000},
        "one_item_request_ms": {"local_median": statistics.median(seq_local.latency_s) * 1000,
                                "queue2_median": statistics.median(seq_queue.latency_s) * 1000},
    }


def print_report(f: dict[str, Any]) -> None:
    t = f["throughput"]
    print(f"HumanEval canonical set, {f['programs']} programs, {f['rounds']} interleaved rounds, "
          f"{f['concurrency']} requests of {f['batch']} items in flight; {f['machine']['nproc']} CPUs")
    for name in ("local", "queue-1", "queue-2"):
        print(f"  {name:8s} {t[name]['median_programs_per_s']:7.1f} programs/s median "
              f"({t[name]['best_programs_per_s']:.1f} best)")
    ratio = f["queue2_over_local"]
    print(f"  queue with 2 workers / local: {ratio:.2f} (target >= {THROUGHPUT_TARGET}: "
          f"{verdict(ratio >= THROUGHPUT_TARGET)})")
    a = f["added_latency_ms"]
    print(f"  queue's added latency per job ({a['jobs']} jobs, one at a time): median {a['median']:.2f} ms, "
          f"p99 {a['p99']:.2f} ms (target median < 2 ms: {verdict(a['median'] < ADDED_MEDIAN_TARGET_S * 1000)})")
    print(f"  bare Redis round trip, no sandbox (XADD -> XREADGROUP -> RPUSH -> BLPOP, 5 ms apart): median "
          f"{a['floor_median']:.2f} ms, p99 {a['floor_p99']:.2f} ms")
    o = f["one_item_request_ms"]
    print(f"  one-item HTTP request, median: local {o['local_median']:.2f} ms, queue {o['queue2_median']:.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_queue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=41, help="items per request (default 41)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
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
