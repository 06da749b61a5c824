"""AceCoder's selection rules over pass rates, pure functions: which samples make a preference pair, which
questions are hard, and the wrapping the pairs were trained with. Nothing here runs a program.

Pass rates are compared as exact fractions: a rate written as a float (0.8, 0.6666666666666666) is read back as
the nearest fraction whose denominator is at most the row's number of tests (`passed/total`; a float is within
1e-16 of it, and two such fractions differ by at least 1/total^2), or at most MAX_DENOMINATOR when the row has no
tests. So a pair at exactly max 4/5 and difference 2/5 is kept, whatever rounding the floats carry.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from typing import Any

from acecoder_reward.models.prompt import messages
from acecoder_reward.sandbox_worker.extract import called_names, extract_code

PAIR_MIN_BEST = Fraction(4, 5)  # the better sample passes at least 80% of the tests
PAIR_MIN_GAP = Fraction(2, 5)  # and at least 40 points more than the other
MAX_DENOMINATOR = 1000  # rates of rows without tests: read as the nearest fraction with a denominator <= this


def exact_rate(rate: Any, tests: int) -> Fraction:
    """`rate` as the fraction passed/total it was computed from (see the module docstring); ValueError for
    anything but a number in [0, 1]."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"pass_rate: {rate!r} is not a number in [0, 1]")
    return Fraction(rate).limit_denominator(tests if tests > 0 else MAX_DENOMINATOR)


def is_pair(a1: Fraction, a2: Fraction) -> bool:
    """The AceCodePair rule: max(a1, a2) >= 0.8 and |a1 - a2| >= 0.4 and min(a1, a2) > 0, all inclusive as
    written, on exact fractions."""
    return max(a1, a2) >= PAIR_MIN_BEST and abs(a1 - a2) >= PAIR_MIN_GAP and min(a1, a2) > 0


# --- pairs ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    model_name: str
    completion_id: Any
    completion: str
    rate: Fraction


def samples_of(row: dict[str, Any]) -> list[Sample]:
    """The row's inferences that carry a pass rate, in order; ValueError naming a pass rate that is not one."""
    tests = len(row.get("test_cases") or [])
    return [Sample(str(inf.get("model_name")), inf.get("completion_id", n), inf["completion"],
                   exact_rate(inf["pass_rate"], tests))
            for n, inf in enumerate(row.get("inferences") or [])
            if isinstance(inf, dict) and inf.get("pass_rate") is not None and isinstance(inf.get("completion"), str)]


def pairs_of(row: dict[str, Any], row_key: str, wrap: str = "none") -> list[dict[str, Any]]:
    """Every pair of one model's samples of this question that passes `is_pair`, the better one chosen; in
    sample order. `wrap="training"` writes instruction and answers the way AceCodeRM was trained on them."""
    by_model: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples_of(row):
        by_model[sample.model_name].append(sample)
    tests = [t for t in row.get("test_cases") or [] if isinstance(t, str)]
    out = []
    for model, samples in by_model.items():
        for s1, s2 in combinations(samples, 2):
            if not is_pair(s1.rate, s2.rate):
                continue
            chosen, rejected = (s1, s2) if s1.rate > s2.rate else (s2, s1)
            instruction, chosen_text, rejected_text = _wrapped(row.get("question") or "", chosen.completion,
                                                               rejected.completion, tests, wrap)
            out.append({"id": f"{row_key}-{model}-{chosen.completion_id}-{rejected.completion_id}",
                        "instruction": instruction, "chosen": chosen_text, "rejected": rejected_text,
                        "chosen_pass_rate": float(chosen.rate), "rejected_pass_rate": float(rejected.rate),
                        "model_name": model})
    return out


def _wrapped(question: str, chosen: str, rejected: str, tests: list[str], wrap: str) -> tuple[str, str, str]:
    if wrap != "training":
        return question, chosen, rejected
    names = called_names(tests) if tests else None
    first = tests[0] if tests else None
    user, good = messages(question, extract_code(chosen, names) or chosen, "training", first)
    _, bad = messages(question, extract_code(rejected, names) or rejected, "training", first)
    return user["content"], good["content"], bad["content"]


# --- the hard subset -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HardThresholds:
    median_mean: Fraction  # of every question with samples
    median_std: float  # of the questions at or under median_mean
    questions: int  # with at least one sampled pass rate


def rate_stats(row: dict[str, Any]) -> tuple[Fraction, float] | None:
    """(mean, population std) of the row's sample pass rates, over every model; None without samples. The mean
    is exact; the std is the square root of the exact variance, so equal rate sets give equal stds."""
    rates = [s.rate for s in samples_of(row)]
    if not rates:
        return None
    mean = sum(rates, Fraction(0)) / len(rates)
    variance = sum(((r - mean) ** 2 for r in rates), Fraction(0)) / len(rates)
    return mean, math.sqrt(variance)


def hard_thresholds(stats: list[tuple[Fraction, float] | None]) -> HardThresholds | None:
    """The medians the hard rule compares with; None when no question has samples."""
    known = [s for s in stats if s is not None]
    if not known:
        return None
    median_mean = statistics.median(m for m, _ in known)
    easy_enough = [std for m, std in known if m <= median_mean]
    return HardThresholds(Fraction(median_mean), statistics.median(easy_enough), len(known))


def is_hard(stat: tuple[Fraction, float] | None, thresholds: HardThresholds) -> bool:
    """Mean pass rate <= the median mean, and then pass-rate std >= the median std of those (both inclusive)."""
    return stat is not None and stat[0] <= thresholds.median_mean and stat[1] >= thresholds.median_std
