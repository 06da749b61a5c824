"""Resumable output: a JSONL file and, beside it, a ledger (`OUT.done`) with one line per input row handled,
written after that row's output lines: `{"key": row id, "rows": lines written, "end": output size after them}`.

A rerun with the same `--out` skips the keys in the ledger (rows kept and rows dropped alike) and first cuts the
output back to the last ledger entry's `end`, so the lines of a row interrupted mid-write are not left behind.
An output file with lines but no ledger is not ours to append to: refused.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

Rows = list[dict[str, Any]]


class RowError(ValueError):
    """An input row this command cannot use; the row is reported and skipped, the run goes on."""


class Ledger:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out.with_name(out.name + ".done")
        self.done: set[str] = set()
        self.rows_before = 0  # output rows written by earlier runs
        self.rows_written = 0  # by this one

    def open(self) -> None:
        """Reads the ledger, cuts the output back to what it records, and opens both for appending."""
        end = 0
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                entry = _entry(line)
                if entry is not None:
                    self.done.add(entry["key"])
                    self.rows_before += entry["rows"]
                    end = entry["end"]
        size = self.out.stat().st_size if self.out.exists() else 0
        if size < end:
            raise SystemExit(f"{self.out}: shorter than its ledger ({self.path.name}) records; remove both to start "
                             "over")
        if not self.path.exists() and size:
            raise SystemExit(f"{self.out}: exists and has no ledger ({self.path.name}); remove it or choose another "
                             "--out")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self.out.open("ab") as f:
            f.truncate(end)
        self._rewrite_ledger()
        self._out = self.out.open("a", encoding="utf-8")
        self._ledger = self.path.open("a", encoding="utf-8")

    def record(self, key: str, rows: Iterable[dict[str, Any]]) -> None:
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows]
        self._out.writelines(lines)
        self._out.flush()
        self._ledger.write(json.dumps({"key": key, "rows": len(lines), "end": self._out.tell()}) + "\n")
        self._ledger.flush()
        self.done.add(key)
        self.rows_written += len(lines)

    def close(self) -> None:
        self._out.close()
        self._ledger.close()

    def _rewrite_ledger(self) -> None:
        """Drops a torn last line (a run killed while writing it), so later entries start on a line of their own."""
        if not self.path.exists():
            self.path.touch()
            return
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            self.path.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")


def _entry(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("end"), int)
    return entry if ok else None


Work = Callable[[str, dict[str, Any]], Awaitable[Rows]]  # (row key, row) -> output rows


REORDER_ROWS_PER_SLOT = 8  # rows finished early that may wait for an earlier one, per concurrency slot


async def process(rows: list[tuple[str, dict[str, Any]]], work: Work, ledger: Ledger, concurrency: int,
                  unit: str = "row") -> list[tuple[str, str]]:
    """Runs `work` over the (key, row) pairs not yet in the ledger, `concurrency` at once, with a progress bar, and
    records each row's output in input order: a row finished early waits in a reorder buffer for the rows before
    it, and no row starts more than `REORDER_ROWS_PER_SLOT * concurrency` rows past the first one not yet
    recorded, so one slow row bounds the buffer instead of growing it. Returns (key, why) for the rows that raised
    RowError: they are not recorded, so a rerun tries them again (and writes them after the rows done by then)."""
    todo = [(k, r) for k, r in rows if k not in ledger.done]
    slots = asyncio.Semaphore(concurrency)
    window = asyncio.Semaphore(REORDER_ROWS_PER_SLOT * concurrency)  # rows started and not yet recorded
    finished: dict[int, Rows | None] = {}  # by position in `todo`; None: the row failed
    failed: list[tuple[str, str]] = []
    next_up = 0

    def record_ready() -> None:
        nonlocal next_up
        while next_up in finished:
            made = finished.pop(next_up)
            if made is not None:
                ledger.record(todo[next_up][0], made)
            window.release()
            next_up += 1

    with tqdm(total=len(todo), unit=unit, file=sys.stderr, dynamic_ncols=True) as bar:
        async def one(n: int, key: str, row: dict[str, Any]) -> None:
            async with slots:
                try:
                    finished[n] = await work(key, row)
                except RowError as exc:
                    failed.append((key, str(exc)))
                    finished[n] = None
            record_ready()
            bar.update(1)

        # Started in order, so the first row not yet recorded always holds a place in the window. A row that
        # raises anything but RowError cancels this loop and the other rows (the task group), never a hang.
        async with asyncio.TaskGroup() as group:
            for n, (key, row) in enumerate(todo):
                await window.acquire()
                group.create_task(one(n, key, row))
    return failed
