"""Runs one `acecoder-reward data` command (service/data_cli.py parses it): reads the rows, keys them by id,
opens the resumable output, builds the command's per-row work, runs it over the rows not yet handled, and
prints the summary and any failed rows."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx

from acecoder_reward.service import batch_cli, datasets
from acecoder_reward.service.data import callers, judging, rules, synthesis
from acecoder_reward.service.data.ledger import Ledger, RowError, Rows, Work, process
from acecoder_reward.service.settings import Settings


def run_command(args: argparse.Namespace, settings: Settings) -> None:
    rows = batch_cli.read_rows(args.input)
    keyed, duplicates = _keyed(rows)
    ledger = Ledger(args.out)
    ledger.open()
    stats: Counter[str] = Counter()
    notes: list[str] = []
    try:
        failed = asyncio.run(_run(args, settings, keyed, ledger, stats, notes))
    finally:
        ledger.close()
    lines = [f"rows in: {len(rows)}; duplicate ids skipped: {duplicates}",
             f"rows out: {ledger.rows_written} this run, {ledger.rows_before + ledger.rows_written} in {args.out}",
             *(f"{name}: {count}" for name, count in stats.items()), *notes]
    print("\n".join(lines))
    _report_failures(args.out, failed)


def _keyed(rows: list[dict[str, Any]]) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """(key, row) by the row's id (else its index); a repeated id is skipped."""
    seen: dict[str, dict[str, Any]] = {}
    for n, row in enumerate(rows):
        seen.setdefault(str(datasets.row_id(row, n)), row)
    return list(seen.items()), len(rows) - len(seen)


async def _run(args: argparse.Namespace, settings: Settings, keyed: list[tuple[str, dict[str, Any]]],
               ledger: Ledger, stats: Counter[str], notes: list[str]) -> list[tuple[str, str]]:
    skipped = sum(1 for k, _ in keyed if k in ledger.done)
    if skipped:
        notes.append(f"rows already handled by an earlier run (skipped): {skipped}")
    if skipped == len(keyed) and args.data_command != "hard":
        return []  # nothing to run: no sandbox pool or LLM client to start
    async with _work(args, settings, keyed, stats, notes) as work:
        return await process(keyed, work, ledger, args.concurrency)


@asynccontextmanager
async def _work(args: argparse.Namespace, settings: Settings, keyed: list[tuple[str, dict[str, Any]]],
                stats: Counter[str], notes: list[str]) -> AsyncIterator[Work]:
    command = args.data_command
    if command in ("filter-tests", "pass-rates"):
        token = args.token or os.environ.get("ACECODER_REWARD_TOKEN")
        cache = not args.no_cache
        caller = callers.remote(args.url, token, cache) if args.url else callers.in_process(settings, cache)
        async with caller as call:
            if command == "filter-tests":
                yield judging.ReferenceFilter(call, judging.Reference(args.reference_field, args.reference_model),
                                              args.min_tests, stats)
            else:
                yield judging.PassRates(call, args.batch, stats)
    elif command == "synthesize-tests":
        config = synthesis.LLMConfig(args.llm_url, args.model, args.llm_api_key or os.environ.get("OPENAI_API_KEY"),
                                     retries=args.retries, backoff_s=args.retry_backoff_s, max_tokens=args.max_tokens)
        async with httpx.AsyncClient() as http:
            yield synthesis.Synthesizer(synthesis.ChatClient(config, http), args.min_tests, args.question_field,
                                        args.program_field, stats)
    elif command == "pairs":
        yield _pairs(args.wrap, stats)
    else:
        yield _hard(keyed, stats, notes)


def _pairs(wrap: str, stats: Counter[str]) -> Work:
    async def work(key: str, row: dict[str, Any]) -> Rows:
        try:
            made = rules.pairs_of(row, key, wrap)
        except ValueError as exc:
            raise RowError(str(exc)) from exc
        stats["pairs made"] += len(made)
        return made

    return work


def _hard(keyed: list[tuple[str, dict[str, Any]]], stats: Counter[str], notes: list[str]) -> Work:
    thresholds = rules.hard_thresholds([_stats(row) for _, row in keyed])
    if thresholds is None:
        raise SystemExit("no row has inferences with a pass_rate: run `data pass-rates` first")
    notes.append(f"thresholds: mean pass rate <= {float(thresholds.median_mean):.6g} (the median of "
                 f"{thresholds.questions} questions with samples), then pass-rate std >= "
                 f"{thresholds.median_std:.6g} (the median among those)")

    async def work(key: str, row: dict[str, Any]) -> Rows:
        try:
            stat = rules.rate_stats(row)
        except ValueError as exc:  # not counted in the thresholds either
            raise RowError(str(exc)) from exc
        hard = rules.is_hard(stat, thresholds)
        stats["hard questions kept" if hard else "questions not hard (dropped)"] += 1
        return [row] if hard else []

    return work


def _stats(row: dict[str, Any]) -> tuple[Fraction, float] | None:
    try:
        return rules.rate_stats(row)
    except ValueError:
        return None


def _report_failures(out: Path, failed: list[tuple[str, str]]) -> None:
    path = out.with_name(out.name + ".failures.jsonl")
    if not failed:
        path.unlink(missing_ok=True)
        return
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": key, "error": why}) + "\n" for key, why in sorted(failed))
    raise SystemExit(f"failed rows: {len(failed)}, listed in {path} (not written; a rerun tries them again)")

