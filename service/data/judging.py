"""The two commands that run programs on the sandbox pool, one AceCode row at a time, through a `Caller` (the
service's reward path in process, or a running service over HTTP: service/data/callers.py):

  filter-tests  the row's reference solution against its `test_cases`: the tests it passes are kept; a question
                left with fewer than `min_tests` is dropped
  pass-rates    each of the row's `inferences` against its `test_cases`: `inferences[j].pass_rate` is written
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from acecoder_reward.sandbox_worker.judge import PASS
from acecoder_reward.service import datasets
from acecoder_reward.service.data.callers import Caller
from acecoder_reward.service.data.ledger import RowError, Rows

TESTS_BODY = {"reward": "tests", "tests_reward": "pass_rate"}


def tests_of(row: dict[str, Any]) -> list[str]:
    """The row's AceCode `test_cases` (asserts)."""
    if row.get("test_cases") is None:
        raise RowError("no test_cases (an AceCode row: id, question, test_cases, inferences)")
    try:
        tests: list[str] = datasets.problem_of(row, "acecode").tests
    except datasets.DatasetError as exc:
        raise RowError(str(exc)) from exc
    return tests


@dataclass(frozen=True)
class Reference:
    """Where a question's reference solution is: a field of the row, or the first completion in `inferences`
    by the named model."""

    field: str | None = None
    model: str | None = None

    def of(self, row: dict[str, Any]) -> str | None:
        if self.field is not None:
            value = row.get(self.field)
            return value if isinstance(value, str) and value.strip() else None
        return next((inf["completion"] for inf in row.get("inferences") or []
                     if isinstance(inf, dict) and inf.get("model_name") == self.model
                     and isinstance(inf.get("completion"), str)), None)


class ReferenceFilter:
    """filter-tests: keeps the tests the reference passes (a test judged in the sandbox counts too: the reference
    is trusted); counts what it keeps and drops in `stats`."""

    def __init__(self, call: Caller, reference: Reference, min_tests: int, stats: Counter[str]) -> None:
        self.call, self.reference, self.min_tests, self.stats = call, reference, min_tests, stats

    async def __call__(self, key: str, row: dict[str, Any]) -> Rows:
        tests = tests_of(row)
        program = self.reference.of(row)
        if program is None:
            self.stats["questions without a reference (dropped)"] += 1
            return []
        answer = await self.call({"items": [{"response": program, "tests": tests}], **TESTS_BODY})
        outcomes = answer["items"][0]["tests"]["outcomes"]
        kept = [t for t, outcome in zip(tests, outcomes, strict=True) if outcome == PASS]
        self.stats["tests kept"] += len(kept)
        self.stats["tests dropped"] += len(tests) - len(kept)
        if len(kept) < self.min_tests:
            self.stats[f"questions with fewer than {self.min_tests} kept tests (dropped)"] += 1
            return []
        return [{**row, "test_cases": kept}]


class PassRates:
    """pass-rates: every completion of the row against its tests, `batch` completions per request."""

    def __init__(self, call: Caller, batch: int, stats: Counter[str]) -> None:
        self.call, self.batch, self.stats = call, batch, stats

    async def __call__(self, key: str, row: dict[str, Any]) -> Rows:
        tests = tests_of(row)
        inferences = row.get("inferences")
        if not isinstance(inferences, list) or not all(isinstance(i, dict) and isinstance(i.get("completion"), str)
                                                       for i in inferences):
            raise RowError("inferences: expected a list of {model_name, completion_id, completion, pass_rate}")
        if not tests:
            raise RowError("test_cases: empty")
        items = [{"response": inf["completion"], "tests": tests} for inf in inferences]
        chunks = [items[i: i + self.batch] for i in range(0, len(items), self.batch)]
        answers = await asyncio.gather(*(self.call({"items": c, **TESTS_BODY}) for c in chunks))
        rates = [item["tests"]["pass_rate"] for answer in answers for item in answer["items"]]
        self.stats["completions scored"] += len(rates)
        self.stats["completions passing every test"] += sum(1 for r in rates if r == 1.0)
        return [{**row, "inferences": [{**inf, "pass_rate": rate} for inf, rate in zip(inferences, rates,
                                                                                        strict=True)]}]
