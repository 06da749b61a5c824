"""Load test through the gateway: steady clients for a while, then twice an overload burst and a recovery.

Below capacity there must be no error at all; above it the gateway must answer 429 (never a 5xx, never a
hang); afterwards it must serve normally again; and the gateway's and workers' memory must stay flat: the
second burst-and-recovery cycle must not add what the first one did.
Each client is a coroutine posting HumanEval canonical items in a loop (httpx, one connection each).

    python -m loadtest.queue_load --url http://127.0.0.1:8000 --pids GATEWAY_PID WORKER_PID ...
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psutil

from loadtest.humaneval_data import load_problems


@dataclass(frozen=True)
class LoadPlan:
    steady_clients: int = 4
    steady_items: int = 8
    steady_s: float = 20.0
    burst_clients: int = 64
    burst_items: int = 64
    burst_s: float = 10.0
    recovery_s: float = 10.0


@dataclass
class Phase:
    name: str
    ok: int = 0
    errors: int = 0  # anything unexpected: a 5xx, a transport error, or (outside the burst) a 429
    status_counts: Counter[int] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)

    def line(self) -> str:
        p50 = statistics.median(self.latencies_s) if self.latencies_s else 0.0
        return (f"{self.name:9s} ok={self.ok:5d} errors={self.errors:3d} statuses={dict(self.status_counts)} "
                f"median latency={p50 * 1000:.0f} ms")


@dataclass
class LoadReport:
    steady: Phase
    burst: Phase
    recovery: Phase
    # pid -> RSS after the steady phase, after the burst and recovery, and after a second burst and recovery
    rss_mb: dict[int, tuple[float, float, float]]

    def rss_growth_mb(self) -> float:
        """Growth over the first overload cycle: the allocator keeps what the burst's peak needed."""
        return max((first - start for start, first, _ in self.rss_mb.values()), default=0.0)

    def rss_creep_mb(self) -> float:
        """Growth over a second, identical cycle: a leak shows here, a high-water mark does not."""
        return max((second - first for _, first, second in self.rss_mb.values()), default=0.0)

    def summary(self) -> str:
        rss = ", ".join(f"{pid}: {a:.0f}->{b:.0f}->{c:.0f} MB" for pid, (a, b, c) in self.rss_mb.items())
        return "\n".join([self.steady.line(), self.burst.line(), self.recovery.line(), f"RSS {rss}"])


def _items() -> itertools.cycle[dict[str, object]]:
    return itertools.cycle([{"response": p.solution, "tests": p.tests} for p in load_problems()])


async def _client(http: httpx.AsyncClient, phase: Phase, items: itertools.cycle[dict[str, object]], count: int,
                  until: float, burst: bool) -> None:
    while time.monotonic() < until:
        body = {"items": [next(items) for _ in range(count)], "cache": False}  # load: runs, not cache hits
        started = time.monotonic()
        try:
            answer = await http.post("/v1/rewards", json=body)
        except httpx.TransportError:
            phase.errors += 1
            continue
        phase.status_counts[answer.status_code] += 1
        if answer.status_code == 200 and answer.json()["rewards"] == [1.0] * count:
            phase.ok += 1
            phase.latencies_s.append(time.monotonic() - started)
        elif answer.status_code == 429 and burst:
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")) / 4)
        else:
            phase.errors += 1


async def _phase(url: str, name: str, clients: int, count: int, seconds: float, burst: bool = False) -> Phase:
    phase = Phase(name)
    items = _items()
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(*(_client(http, phase, items, count, until, burst) for _ in range(clients)))
    return phase


def _rss_mb(pids: list[int]) -> dict[int, float]:
    return {pid: psutil.Process(pid).memory_info().rss / 2**20 for pid in pids}


async def _run(url: str, pids: list[int], plan: LoadPlan) -> LoadReport:
    steady = await _phase(url, "steady", plan.steady_clients, plan.steady_items, plan.steady_s)
    rss = [_rss_mb(pids)]
    phases: list[Phase] = []
    for _ in range(2):
        phases.append(await _phase(url, "burst", plan.burst_clients, plan.burst_items, plan.burst_s, burst=True))
        await asyncio.sleep(1)  # let the burst's accepted jobs drain
        phases.append(await _phase(url, "recovery", plan.steady_clients, plan.steady_items, plan.recovery_s))
        rss.append(_rss_mb(pids))
    burst, recovery = _merged("burst", phases[0::2]), _merged("recovery", phases[1::2])
    return LoadReport(steady, burst, recovery, {pid: (rss[0][pid], rss[1][pid], rss[2][pid]) for pid in pids})


def _merged(name: str, phases: list[Phase]) -> Phase:
    merged = Phase(name)
    for p in phases:
        merged.ok += p.ok
        merged.errors += p.errors
        merged.status_counts.update(p.status_counts)
        merged.latencies_s += p.latencies_s
    return merged


def run_load(url: str, pids: list[int], plan: LoadPlan) -> LoadReport:
    return asyncio.run(_run(url, pids, plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pids", type=int, nargs="*", default=[], help="processes whose RSS must stay flat")
    parser.add_argument("--steady-s", type=float, default=20.0)
    parser.add_argument("--burst-s", type=float, default=10.0)
    args = parser.parse_args()
    report = run_load(args.url, args.pids, LoadPlan(steady_s=args.steady_s, burst_s=args.burst_s,
                                                    recovery_s=args.steady_s / 2))
    print(report.summary())


if __name__ == "__main__":
    main()
