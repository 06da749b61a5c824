"""Stress: SIGTERM busy queue workers, many times, on loaded CPUs; every stop must end within its drain time
plus a slack.

Run: `.venv/bin/python -m loadtest.sigterm_stress --rounds 30 [--drain-s 10 0.3] [--redis-url URL]`

It starts a private redis-server (or uses --redis-url, on a fresh key prefix), a gateway and --workers real
`acecoder-reward worker` processes (logging at debug), and keeps them busy: client threads post batches of
sleeper items through the gateway in a loop. Busy-loop processes hold every CPU. Each round waits until the
oldest worker runs a job, SIGTERMs it, times its exit and starts a replacement; the replacements take their
drain time from --drain-s in turn, so both ways a stop goes are exercised (running jobs finish, or are cut off
and handed back). At the end it prints every stop's duration (min/median/max per drain time) and the log of
each stop that exceeded its bound, and exits 1 if any did, if a worker did not exit 0, or if a request failed.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis

from acecoder_reward.sandbox_worker.queue_keys import QueueKeys
from loadtest.gateway_process import die_with_parent
from loadtest.queue_processes import SLOW_LIMITS, QueueStack, RedisServer, WorkerStop, sleeper

BUSY_TIMEOUT_S = 30.0  # a worker that runs nothing for this long means the load is not reaching it


@dataclass
class Outcome:
    stops: list[tuple[float, WorkerStop]] = field(default_factory=list)  # (drain time, stop)
    slow_logs: list[str] = field(default_factory=list)
    requests_ok: int = 0
    requests_failed: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _spin() -> None:
    die_with_parent()
    while True:
        pass


@contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """Busy loops on every CPU: the workers, their zygotes and Redis compete for time, as in a full test run."""
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes)]
    for hog in hogs:
        hog.start()
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


def _post_forever(stack: QueueStack, batch: int, job_s: float, stop: threading.Event, outcome: Outcome) -> None:
    """One client: posts a batch of sleepers, checks every result came back right, repeats."""
    assert stack.gateway is not None
    values = itertools.count()
    with stack.gateway.client(timeout=120) as client:
        while not stop.is_set():
            items = [sleeper(next(values), job_s) for _ in range(batch)]
            try:
                answer = client.post("/v1/rewards", json={"items": items, "limits": SLOW_LIMITS, "cache": False})
            except httpx.TransportError as exc:
                outcome.requests_failed.append(repr(exc))
                continue
            if answer.status_code == 200 and answer.json()["rewards"] == [1.0] * batch:
                outcome.requests_ok += 1
            else:
                outcome.requests_failed.append(f"{answer.status_code}: {answer.text[:300]}")


def _running(client: redis.Redis, keys: QueueKeys, name: str) -> int:
    raw = client.get(keys.worker(name))
    return int(orjson.loads(raw)["running"]) if raw else 0


def _wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _round(stack: QueueStack, client: redis.Redis, drains: dict[str, float], drain_cycle: Iterator[float],
           args: argparse.Namespace, outcome: Outcome) -> None:
    keys = QueueKeys(stack.prefix)
    name = next(n for n, p in stack.workers.items() if p.poll() is None)
    _wait_until(lambda: _running(client, keys, name) > 0, BUSY_TIMEOUT_S, f"worker {name} to run a job")
    drain_s = drains[name]
    stop = stack.terminate_worker(name, drain_s + args.slack_s + 30)
    outcome.stops.append((drain_s, stop))
    over = stop.seconds > drain_s + args.slack_s or stop.returncode != 0
    log(f"  {name}: drain {drain_s:g} s, stopped in {stop.seconds:.2f} s, exit {stop.returncode}"
        + ("  <-- OVER THE BOUND" if over else ""))
    if over:
        outcome.slow_logs.append(f"--- {name} (drain {drain_s:g} s, {stop.seconds:.2f} s, exit "
                                 f"{stop.returncode}) ---\n{stack.worker_log(name)}")
    _start_worker(stack, client, drains, next(drain_cycle), args)


def _start_worker(stack: QueueStack, client: redis.Redis, drains: dict[str, float], drain_s: float,
                  args: argparse.Namespace) -> None:
    name = stack.start_worker(args.concurrency, ACECODER_WORKER_DRAIN_S=str(drain_s))
    drains[name] = drain_s
    keys = QueueKeys(stack.prefix)
    _wait_until(lambda: client.exists(keys.worker(name)), 120, f"worker {name} to beat")


def run(args: argparse.Namespace, work: Path) -> Outcome:
    private = None
    url = args.redis_url
    if url is None:
        private = RedisServer(work / "redis")
        private.start()
        url = private.url
    stack = QueueStack(url, f"sigterm-{uuid.uuid4().hex[:8]}", work / "stack", {})
    client = redis.Redis.from_url(url, socket_timeout=5)
    drains: dict[str, float] = {}
    drain_cycle = itertools.cycle(args.drain_s)
    outcome = Outcome()
    stop_posting = threading.Event()
    posters = [threading.Thread(target=_post_forever, args=(stack, args.batch, args.job_s, stop_posting, outcome))
               for _ in range(args.clients)]
    try:
        for _ in range(args.workers):
            _start_worker(stack, client, drains, next(drain_cycle), args)
        stack.start_gateway()
        stack.wait_workers(args.workers)
        for poster in posters:
            poster.start()
        with cpu_load(args.cpu_hogs):
            for n in range(args.rounds):
                log(f"round {n + 1}/{args.rounds}")
                _round(stack, client, drains, drain_cycle, args, outcome)
    finally:
        stop_posting.set()
        for poster in posters:
            poster.join(120)
        stack.stop()
        if private is not None:
            private.stop()
    return outcome


def report(outcome: Outcome, slack_s: float) -> bool:
    """Prints the figures; True when every stop kept its bound and every request was answered right."""
    for drain_s in sorted({d for d, _ in outcome.stops}, reverse=True):
        times = [s.seconds for d, s in outcome.stops if d == drain_s]
        over = [t for t in times if t > drain_s + slack_s]
        print(f"drain {drain_s:g} s: {len(times)} stops, min {min(times):.2f} s, median "
              f"{statistics.median(times):.2f} s, max {max(times):.2f} s; {len(over)} over {drain_s + slack_s:g} s"
              + (f": {', '.join(f'{t:.2f}' for t in over)}" if over else ""))
    bad_exits = [s for _, s in outcome.stops if s.returncode != 0]
    print(f"exits other than 0: {len(bad_exits)}; requests: {outcome.requests_ok} ok, "
          f"{len(outcome.requests_failed)} failed")
    for failure in outcome.requests_failed[:5]:
        print(f"  request failed: {failure}")
    for slow in outcome.slow_logs:
        print(slow)
    return not outcome.slow_logs and not outcome.requests_failed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--drain-s", type=float, nargs="+", default=[10.0, 0.3],
                        help="drain times, given to the started workers in turn")
    parser.add_argument("--slack-s", type=float, default=3.0, help="a stop may take its drain time plus this")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2, help="threads posting batches through the gateway")
    parser.add_argument("--batch", type=int, default=6, help="sleeper items per request")
    parser.add_argument("--job-s", type=float, default=1.5, help="how long each sleeper item runs")
    parser.add_argument("--cpu-hogs", type=int, default=os.cpu_count() or 1, help="busy-loop processes")
    parser.add_argument("--redis-url", help="an existing Redis (a fresh key prefix is used); default: a private one")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sigterm-stress-") as work:
        ok = report(run(args, Path(work)), args.slack_s)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
