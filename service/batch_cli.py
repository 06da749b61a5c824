"""`acecoder-reward score FILE.jsonl` and `acecoder-reward best-of-n FILE.jsonl`: files of items or of problems
with candidates, scored through a running service (`--url`) or in process (the same reward path the gateway
runs, configured by the same ACECODER_* settings), with a progress bar, JSONL results and a summary.

score input rows:      {"id"?, "question"?, "response", "tests"?, "fn_name"?, "compare"?, "test_imports"?}, or
                       a dataset's own rows (AceCode, APPS/TACO, CodeContests, LiveCodeBench, HumanEval, MBPP:
                       service/datasets.py), the response in the column `--response-field` names
best-of-n input rows:  {"id"?, "question", "candidates": [...], "tests"?}
Both read JSONL (.gz too) or Parquet.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
from tqdm import tqdm

from acecoder_reward.service import datasets, protocol
from acecoder_reward.service.best_of_n import BestOfN, rank
from acecoder_reward.service.errors import ServiceError
from acecoder_reward.service.settings import Settings

Caller = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # half the server's default ACECODER_MAX_BODY_BYTES: LiveCodeBench items are big


def read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        return datasets.read_rows(path)
    except (ValueError, OSError) as exc:  # DatasetError, bad JSON, a file that is neither JSONL nor Parquet
        raise SystemExit(f"{path}: {exc}") from exc


@asynccontextmanager
async def remote(url: str, token: str | None, retries: int = 8) -> AsyncIterator[Caller]:
    """Calls a running service; 429/503 are retried after their Retry-After."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=600, headers=headers) as http:
        async def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            for attempt in range(retries + 1):
                response = await http.post(path, json=body)
                if response.status_code in (429, 503) and attempt < retries:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status_code != 200:
                    raise SystemExit(f"{path}: {response.status_code} {response.text[:500]}")
                data: dict[str, Any] = response.json()
                return data
            raise AssertionError("unreachable")

        yield call


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[Caller]:
    """The gateway's reward path without HTTP: embedded sandbox pool, and the reward model if configured."""
    from acecoder_reward.service.executors import embedded_executor
    from acecoder_reward.service.metrics import Metrics
    from acecoder_reward.service.model_reward import model_rewarder
    from acecoder_reward.service.rewards import RewardService

    metrics = Metrics()
    async with embedded_executor(settings) as executor, model_rewarder(settings, metrics) as model:
        rewards = RewardService(executor, settings, metrics, model)

        async def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            try:
                if path == "/v1/best-of-n":
                    return (await BestOfN(rewards).choose(protocol.BestOfNRequest.model_validate(body))).model_dump()
                return (await rewards.score(protocol.RewardRequest.model_validate(body))).model_dump()
            except ServiceError as exc:
                raise SystemExit(f"{exc.field or 'request'}: {exc.message}") from exc

        yield call


async def run_all(jobs: list[tuple[str, dict[str, Any], int]], call: Caller, concurrency: int,
                  unit: str) -> list[dict[str, Any]]:
    """Runs (path, body, weight) jobs, at most `concurrency` at once, with a progress bar counting `unit`."""
    slots = asyncio.Semaphore(concurrency)
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    with tqdm(total=sum(w for _, _, w in jobs), unit=unit, file=sys.stderr, dynamic_ncols=True) as bar:
        async def one(n: int) -> None:
            path, body, weight = jobs[n]
            async with slots:
                results[n] = await call(path, body)
            bar.update(weight)

        await asyncio.gather(*(one(n) for n in range(len(jobs))))
    return [r for r in results if r is not None]


def write_rows(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        out.write(json.dumps(row) + "\n")


# --- score ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreOptions:
    reward: str = "tests"
    tests_reward: str = "pass_rate"
    batch: int = 32  # items per request (fewer when they pass MAX_REQUEST_BYTES)
    format: str = "auto"  # one of datasets.FORMATS
    response_field: str = "response"
    compare: str | None = None  # overrides the rows' comparison of stdout (input/output tests)
    untrusted_tests: str | None = None


@dataclass(frozen=True)
class ScoreTask:
    """One item to score: a row's problem with one of its responses (`index`: which, when it has a list)."""

    id: Any
    index: int | None
    item: dict[str, Any]


def score_tasks(rows: list[dict[str, Any]], options: ScoreOptions) -> list[ScoreTask]:
    tasks = []
    for n, row in enumerate(rows):
        try:
            problem = datasets.problem_of(row, options.format)
            responses, many = datasets.responses_of(row, options.format, options.response_field)
        except datasets.DatasetError as exc:
            raise SystemExit(f"row {n + 1}: {exc}") from exc
        if options.reward != "model" and not problem.tests:
            raise SystemExit(f"row {n + 1}: no tests, and reward={options.reward} needs them")
        rid = datasets.row_id(row, n)
        tasks += [ScoreTask(rid, k if many else None, problem.item(r, options.compare))
                  for k, r in enumerate(responses)]
    return tasks


def score_jobs(tasks: list[ScoreTask], options: ScoreOptions) -> list[tuple[str, dict, int]]:
    """Requests of at most `batch` items and about MAX_REQUEST_BYTES (an item bigger than that goes alone)."""
    chunks: list[list[dict[str, Any]]] = []
    size = 0
    for task in tasks:
        item_bytes = len(json.dumps(task.item))
        if not chunks or len(chunks[-1]) == options.batch or size + item_bytes > MAX_REQUEST_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(task.item)
        size += item_bytes
    body = {"reward": options.reward, "tests_reward": options.tests_reward}
    if options.untrusted_tests:
        body["untrusted_tests"] = options.untrusted_tests
    return [("/v1/rewards", {"items": chunk, **body}, len(chunk)) for chunk in chunks]


def score_results(tasks: list[ScoreTask], answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = [item for answer in answers for item in answer["items"]]
    out = []
    for task, item in zip(tasks, items, strict=True):
        tests, model = item.get("tests"), item.get("model")
        result: dict[str, Any] = {"id": task.id}
        if task.index is not None:
            result["response_index"] = task.index
        result.update(reward=item["reward"], pass_rate=tests["pass_rate"] if tests else None,
                      status=tests["status"] if tests else None, score=model["score"] if model else None)
        out.append(result)
    return out


def score_summary(results: list[dict[str, Any]]) -> str:
    statuses = Counter(r["status"] for r in results if r["status"] is not None)
    lines = [f"items: {len(results)}", f"mean reward: {statistics.fmean(r['reward'] for r in results):.4f}"]
    if statuses:
        passed = sum(1 for r in results if r["pass_rate"] == 1.0)
        lines.append(f"all tests passed: {passed}/{len(results)}; program status: {dict(statuses.most_common())}")
    return "\n".join(lines)


# --- best-of-n -----------------------------------------------------------------------------------------------------


def best_of_n_jobs(rows: list[dict[str, Any]], rank_by: str | None) -> list[tuple[str, dict, int]]:
    jobs = []
    for row in rows:
        body: dict[str, Any] = {k: row[k] for k in ("question", "candidates", "tests") if k in row}
        if rank_by:
            body["rank_by"] = rank_by
        jobs.append(("/v1/best-of-n", body, len(row["candidates"])))
    return jobs


def best_of_n_results(rows: list[dict[str, Any]], answers: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for n, (row, answer) in enumerate(zip(rows, answers, strict=True)):
        result: dict[str, Any] = {"id": row.get("id", n), "rank_by": answer["rank_by"], "chosen": answer["chosen"],
                                  "ranking": answer["ranking"], "scores": answer["scores"],
                                  "pass_rates": answer["pass_rates"]}
        rates = answer["pass_rates"]
        if rates is not None:
            passes = [r == 1.0 for r in rates]
            result.update(chosen_passes=passes[answer["chosen"]], first_passes=passes[0],
                          random_passes=passes[rng.randrange(len(passes))], passing=sum(passes))
        out.append(result)
    return out


def best_of_n_summary(results: list[dict[str, Any]]) -> str:
    judged = [r for r in results if "chosen_passes" in r]
    lines = [f"problems: {len(results)}; candidates: {sum(len(r['ranking']) for r in results)}"]
    if judged:
        def rate(key: str) -> str:
            hits = sum(bool(r[key]) for r in judged)
            return f"{hits}/{len(judged)} ({hits / len(judged):.1%})"
        lines.append(f"selected candidate passes: {rate('chosen_passes')}; first candidate: "
                     f"{rate('first_passes')}; a random candidate: {rate('random_passes')}")
    return "\n".join(lines)


def accuracy_by_n(results: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Pass rate of the selection among the first N candidates, for N = 1..max, from the scores already
    computed (no rescoring); next to it, the first candidate and the expected value of a random one."""
    judged = [r for r in results if r.get("pass_rates") is not None]
    max_n = max((len(r["pass_rates"]) for r in judged), default=0)
    curves: dict[str, list[float]] = {"n": [], "selected": [], "first": [], "random": []}
    for n in range(1, max_n + 1):
        sel, first, rnd = [], [], []
        for r in judged:
            rates = r["pass_rates"][:n]
            scores = r["scores"][:n] if r["scores"] is not None else None
            chosen = rank(r["rank_by"], rates, scores)[0]
            sel.append(rates[chosen] == 1.0)
            first.append(rates[0] == 1.0)
            rnd.append(sum(x == 1.0 for x in rates) / len(rates))
        curves["n"].append(n)
        for key, values in (("selected", sel), ("first", first), ("random", rnd)):
            curves[key].append(statistics.fmean(values))
    return curves


def plot_accuracy(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("selected", "best-of-N selection"), ("first", "first candidate"),
                       ("random", "random candidate")):
        ax.plot(curves["n"], curves[key], marker="o", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("N (candidates per problem)")
    ax.set_ylabel("selected candidate passes all tests")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- entry points --------------------------------------------------------------------------------------------------


def _caller(settings: Settings, url: str | None, token: str | None) -> Any:
    return remote(url, token) if url else in_process(settings)


def run_score(settings: Settings, path: Path, out: Path | None, url: str | None, token: str | None,
              options: ScoreOptions, concurrency: int) -> None:
    tasks = score_tasks(read_rows(path), options)
    if not tasks:
        raise SystemExit(f"{path}: no responses to score")

    async def go() -> list[dict[str, Any]]:
        async with _caller(settings, url, token) as call:
            return await run_all(score_jobs(tasks, options), call, concurrency, "item")

    results = score_results(tasks, asyncio.run(go()))
    _write(results, out)
    print(score_summary(results))


def run_best_of_n(settings: Settings, path: Path, out: Path | None, url: str | None, token: str | None,
                  rank_by: str | None, concurrency: int, plot: Path | None, seed: int) -> None:
    rows = read_rows(path)
    for n, row in enumerate(rows):
        if not row.get("candidates") or "question" not in row:
            raise SystemExit(f"{path}: row {n + 1} needs `question` and a non-empty `candidates` list")

    async def go() -> list[dict[str, Any]]:
        async with _caller(settings, url, token) as call:
            return await run_all(best_of_n_jobs(rows, rank_by), call, concurrency, "candidate")

    results = best_of_n_results(rows, asyncio.run(go()), seed)
    _write(results, out)
    print(best_of_n_summary(results))
    if plot is not None:
        curves = accuracy_by_n(results)
        if not curves["n"]:
            raise SystemExit("--plot needs problems with tests")
        plot_accuracy(curves, plot)
        print(f"plot: {plot}")


def _write(results: list[dict[str, Any]], out: Path | None) -> None:
    if out is None:
        write_rows(results, sys.stdout)
        return
    with out.open("w", encoding="utf-8") as f:
        write_rows(results, f)
    print(f"results: {out}", file=sys.stderr)
