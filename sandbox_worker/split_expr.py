"""The expression splitter: which sub-expressions of a check the judge evaluates, and which are holes.

`Splitter.split` walks one checked expression and replaces every sub-expression the trusted evaluator cannot
evaluate (a call of the candidate's, an unknown name) by a `Hole`, the value the sandbox computes. The
helpers below decide whether a set of holes may stand: a hole must compute the thing under test, never part
of the expected side, and never the verdict itself (assertions.py applies them per check).
"""

from __future__ import annotations

import ast
import builtins
import sys
from typing import Any

from acecoder_reward.sandbox_worker.check_nodes import ALL_PURE_METHODS, PREDICATE_METHODS, Hole
from acecoder_reward.sandbox_worker.trusted_scope import Scope, TestCaseInstance, TrustedModule


class Unsplittable(Exception):
    """The test has a shape the judge cannot evaluate outside the sandbox."""


class Splitter:
    """Replaces every sub-expression the judge cannot evaluate by a `Hole`."""

    def __init__(self, scope: Scope, holes: list[ast.expr], static: Any) -> None:
        self.scope = scope
        self.holes = holes
        self.static = static
        self.locals: set[str] = set()
        self.repeated = 0  # > 0 inside what Python evaluates once per iteration or per call

    def split(self, node: ast.expr) -> ast.expr:
        if not self._trusted(node):
            return self._hole(node)
        if isinstance(node, ast.Call):
            return self._split_call(node)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return self._split_comprehension(node)
        if isinstance(node, ast.Lambda):
            return self._repeated(lambda: self._with_locals({a.arg for a in node.args.args},
                                                            lambda: self._split_fields(node)))
        if isinstance(node, (ast.Name, ast.Attribute, ast.Constant)):
            return node
        return self._split_fields(node)

    def _hole(self, node: ast.expr) -> ast.expr:
        free = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if free & self.locals:  # it would need a comprehension's variable, which only the judge has
            raise Unsplittable
        if self.repeated:  # Python would call it once per iteration (a generator is used up, state moves on)
            raise Unsplittable
        self.holes.append(node)
        return Hole(len(self.holes) - 1)

    def _split_fields(self, node: ast.expr) -> ast.expr:
        for name, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                setattr(node, name, self.split(value))
            elif isinstance(value, list):
                setattr(node, name, [self.split(v) if isinstance(v, ast.expr) else v for v in value])
        return node

    def _split_call(self, node: ast.Call) -> ast.Call:
        if isinstance(node.func, ast.Attribute) and not isinstance(self.static(node.func.value), TrustedModule):
            node.func.value = self.split(node.func.value)  # a method of a plain value
        node.args = [self.split(a) for a in node.args]
        for kw in node.keywords:
            kw.value = self.split(kw.value)
        return node

    def _split_comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> ast.expr:
        """Only the first generator's iterable is evaluated once, as in Python; what follows runs per item."""
        saved, saved_repeated = set(self.locals), self.repeated
        try:
            for k, gen in enumerate(node.generators):
                self.repeated = saved_repeated + (k > 0)
                gen.iter = self.split(gen.iter)
                self.repeated = saved_repeated + 1
                self.locals |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
                gen.ifs = [self.split(c) for c in gen.ifs]
            if isinstance(node, ast.DictComp):
                node.key, node.value = self.split(node.key), self.split(node.value)
            else:
                node.elt = self.split(node.elt)
        finally:
            self.locals, self.repeated = saved, saved_repeated
        return node

    def _repeated(self, body: Any) -> Any:
        self.repeated += 1
        try:
            return body()
        finally:
            self.repeated -= 1

    def _with_locals(self, names: set[str], body: Any) -> Any:
        saved = set(self.locals)
        self.locals |= names
        try:
            return body()
        finally:
            self.locals = saved

    def _candidate(self, node: ast.expr) -> bool:
        """Whether `node` uses a name the judge does not know (the candidate's, or an unknown import)."""
        return any(isinstance(n, ast.Name) and n.id not in self.locals and not self.scope.knows(n.id)
                   for n in ast.walk(node))

    def _trusted(self, node: ast.expr) -> bool:
        if isinstance(node, (ast.Constant, ast.Set, ast.Dict, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
                             ast.IfExp, ast.Subscript, ast.Slice, ast.Starred)):
            return True
        if isinstance(node, (ast.List, ast.Tuple)):
            return isinstance(node.ctx, ast.Load)
        if isinstance(node, ast.Name):
            return node.id in self.locals or self.scope.knows(node.id)
        if isinstance(node, ast.Attribute):
            return self.static(node) is not None
        if isinstance(node, ast.Call):
            return self._trusted_call(node)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return all(simple_target(g.target) and not g.is_async for g in node.generators)
        if isinstance(node, ast.Lambda):
            return not has_params(node, allow_positional=True)
        return False

    def _trusted_call(self, node: ast.Call) -> bool:
        if any(k.arg is None for k in node.keywords):
            return False  # **kwargs
        func = node.func
        if isinstance(func, ast.Attribute) and not isinstance(self.static(func.value), TrustedModule):
            if func.attr not in ALL_PURE_METHODS:
                return False
            if (isinstance(func.value, ast.Name) and func.value.id in self.locals) or not self._candidate(func.value):
                return True  # a method of a value only the judge computes (a loop variable, a literal)
            # On the candidate's value: a predicate given the test's argument (`f("abc").startswith("cb")`)
            # is applied by the judge to the plain value, or the candidate's object could answer yes to
            # anything. Other methods stay in the hole with their arguments (`f(1).upper()`,
            # `Solution().count([1, 2])`): their result is compared outside like any value, and a
            # program's own class keeps its own methods.
            return func.attr in PREDICATE_METHODS and bool(node.args or node.keywords) and is_value(func.value)
        if isinstance(func, ast.Name) and func.id in self.locals:
            return False
        target = self.static(func)
        return callable(target) and not isinstance(target, (TrustedModule, TestCaseInstance))


def is_value(node: ast.expr) -> bool:
    """A method's receiver: anything but a bare name that might be the candidate's object or module."""
    return not isinstance(node, ast.Name)


def simple_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Name):
        return True
    return isinstance(target, (ast.Tuple, ast.List)) and all(simple_target(t) for t in target.elts)


def has_params(node: ast.Lambda, allow_positional: bool = False) -> bool:
    """Whether the lambda takes parameters beyond what the judge supports (plain positional ones)."""
    a = node.args
    extra = a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults or a.kw_defaults
    return bool(extra) or (bool(a.args) and not allow_positional)


def uses_candidate_names(node: ast.expr, test_bound: Any) -> bool:
    free = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return bool(free - _BUILTIN_NAMES - set(test_bound))


def decides_or_reveals(hole: ast.expr) -> bool:
    """A hole that compares inside, or that uses no candidate-defined name (so it computes part of the
    expected value, e.g. `[x * 2 for x in range(3)]`), would let the sandbox judge."""
    nodes = list(ast.walk(hole))
    if any(isinstance(n, (ast.Compare, ast.BoolOp, ast.Lambda)) for n in nodes):
        return True
    bound = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    free = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound
    return not (free - _BUILTIN_NAMES)


_BUILTIN_NAMES = frozenset(dir(builtins))


def root_is_module_access(node: ast.expr, imported: set[str]) -> bool:
    """`math.factorial(5)`: an attribute of a stdlib module or of a name the test imported (a candidate
    function named `random` is fine)."""
    parent: ast.expr | None = None
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        parent = node
        node = node.func if isinstance(node, ast.Call) else node.value
    if not isinstance(node, ast.Name):
        return False
    return node.id in imported or (node.id in sys.stdlib_module_names and isinstance(parent, ast.Attribute))


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None
