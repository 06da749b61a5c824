"""Splitting a test into candidate-side holes and trusted checks.

For `assert f(x) == y` the sandbox evaluates only `f(x)` (a "hole"); the check `<hole> == y`, which holds
the expected value, stays on the trusted side and is evaluated there (trusted_eval) over the plain data the
sandbox sent back. The shapes datasets use are split this way:

- statements before the checks that only import (`import math`, `from math import isclose`, `import numpy
  as np`) or make a `unittest.TestCase()`; the names they bind resolve to the judge's own modules
  (trusted_scope), and the imports run in the sandbox too when a hole needs their names;
- `assert <expr>` (several in one test: the first false one fails it), where the expression may use
  literals, operators, comprehensions and lambdas over plain data, the builtins and module functions
  trusted_scope lists, and methods of builtin types;
- unittest's assertion methods on a TestCase (`unittest.TestCase().assertEqual(add(1, 2), 3)`), evaluated
  by unittest_checks, and `assertRaises`/`assertRaisesRegex`, as a context manager or with a callable,
  judged from the builtin classes of the exception the hole raised;
- trusted assertion functions called as statements (`numpy.testing.assert_allclose(f(x), [...])`).

A test is judged in the sandbox (and reported as such) when it cannot be split that way: it holds other
statements (loops, definitions), or a hole would carry the decision (a comparison inside it), compute part
of the expected value (a hole of constants only, or holes of several roots in one check, or a hole rooted at
a module the candidate could patch) or depend on a comprehension's variable.
"""

from __future__ import annotations

import ast
import builtins
import sys
from dataclasses import dataclass, field
from typing import Any

from acecoder_reward.sandbox_worker import io_tests, trusted_eval, trusted_scope, unittest_checks
from acecoder_reward.sandbox_worker.trusted_eval import (
    ALL_PURE_METHODS,
    PREDICATE_METHODS,
    CallCheck,
    CheckFailed,
    Checks,
    Hole,
    HoleError,
    HoleFailed,
    MethodCheck,
    Raises,
    TestExpressionError,
    Truth,
)
from acecoder_reward.sandbox_worker.trusted_scope import Scope, TestCaseInstance, TestCaseMarker, TrustedModule

__all__ = ["CheckFailed", "Hole", "HoleError", "HoleFailed", "Raises", "TestExpressionError", "TestPlan", "evaluate",
           "plan_io", "plan_test"]


@dataclass(frozen=True)
class TestPlan:
    """How one test is run: `setup` then `holes` go to the sandbox; `outer` (if any) is judged outside."""

    source: str
    holes: tuple[str, ...] = ()
    outer: ast.expr | None = None
    in_sandbox: bool = False
    invalid: str | None = None
    setup: str | None = None  # the test's imports that the holes need, run before them in the sandbox
    io: dict[str, Any] | None = None  # an input/output test (io_tests' wire form, expected output included)
    # Whether any hole raising surely fails the test: not where an assertRaises expects it, nor where
    # `and`/`or`/`if` might never look at the hole (stop_on_first_failure stops the run only on these).
    fails_if_raised: bool = True
    scope: Scope = field(default_factory=Scope, repr=False)
    hole_nodes: tuple[ast.expr, ...] = field(default=(), repr=False)


class _Unsplittable(Exception):
    """The test has a shape the judge cannot evaluate outside the sandbox."""


def plan_test(source: str, numpy_allowed: bool = False) -> TestPlan:
    """Parses one test and decides what runs in the sandbox and what is judged outside. `numpy_allowed`:
    runs may import numpy, so the judge evaluates numpy's comparisons (with its own numpy)."""
    try:
        module = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return TestPlan(source, invalid=f"test does not parse: {type(exc).__name__}: {exc}"[:500])
    whole = TestPlan(source, holes=(source,), in_sandbox=True)
    builder = _Builder(numpy_allowed and trusted_scope.enable_numpy())
    try:
        for stmt in module.body:
            builder.add(stmt)
        return builder.plan(source) or whole
    except (_Unsplittable, RecursionError):
        # RecursionError: nested deeper than the splitter goes (ast.parse takes ~1000s of `1 + 1 + ...`); the
        # whole test runs in the sandbox, where compiling it is bounded by the run's deadline and limits.
        return whole


def plan_io(test: dict[str, Any]) -> TestPlan:
    """An input/output test: the run gets its input, its one result is compared by io_tests outside."""
    return TestPlan(io_tests.describe(test), io=test)


def evaluate(plan: TestPlan, hole_values: list[tuple[bool, Any]]) -> bool:
    """Judges a split test from its holes' (ok, value or HoleError/message) results: True or False, or
    raises CheckFailed (a unittest check failed), HoleFailed or TestExpressionError."""
    assert plan.outer is not None
    return trusted_eval.evaluate(plan.outer, plan.scope, hole_values)


class _Builder:
    """Collects a test's bindings and checks, statement by statement."""

    def __init__(self, numpy_allowed: bool) -> None:
        self.numpy_allowed = numpy_allowed
        self.trusted: dict[str, Any] = {}
        self.unknown: set[str] = set()
        self.imports: list[tuple[ast.stmt, set[str]]] = []  # each import statement and the names it binds
        self.checks: list[ast.expr] = []
        self.holes: list[ast.expr] = []

    @property
    def scope(self) -> Scope:
        return Scope(dict(self.trusted), frozenset(self.unknown))

    def add(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            return  # docstrings, bare strings and `pass`
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign)):
            if self.checks:  # a binding after a check could change what an earlier hole sees
                raise _Unsplittable
            self._bind(stmt)
        elif isinstance(stmt, ast.Assert):
            self.checks.append(Truth(self._split_value(stmt.test)))
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            self.checks.append(self._call_statement(stmt.value))
        elif isinstance(stmt, ast.With):
            self.checks.append(self._raises_block(stmt))
        else:
            raise _Unsplittable

    def plan(self, source: str) -> TestPlan | None:
        if not self.checks or not self.holes:
            return None  # nothing of the candidate's is checked: whatever it is, it runs whole
        used = {n.id for h in self.holes for n in ast.walk(h) if isinstance(n, ast.Name)}
        setup = "\n".join(ast.unparse(stmt) for stmt, names in self.imports if names & used) or None
        outer = self.checks[0] if len(self.checks) == 1 else Checks(self.checks)
        fails = not any(isinstance(n, (Raises, ast.BoolOp, ast.IfExp)) for n in ast.walk(outer))
        return TestPlan(source, holes=tuple(ast.unparse(h) for h in self.holes), outer=outer, setup=setup,
                        scope=self.scope, hole_nodes=tuple(self.holes), fails_if_raised=fails)

    # -- bindings

    def _bind(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            target = stmt.targets[0] if len(stmt.targets) == 1 else None
            if not isinstance(target, ast.Name) or not isinstance(self._static(stmt.value), TestCaseInstance):
                raise _Unsplittable
            self.trusted[target.id] = trusted_scope.TESTCASE
            self.unknown.discard(target.id)
            return
        bound: dict[str, Any] = {}
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                name = alias.asname or alias.name.partition(".")[0]
                bound[name] = self._module(alias.name if alias.asname else alias.name.partition(".")[0])
        else:
            assert isinstance(stmt, ast.ImportFrom)
            if stmt.level or stmt.module is None or any(a.name == "*" for a in stmt.names):
                raise _Unsplittable
            owner = self._module(stmt.module)
            for alias in stmt.names:
                attr = owner.attrs.get(alias.name) if owner else None
                sub = self._module(f"{stmt.module}.{alias.name}")
                bound[alias.asname or alias.name] = sub or attr
        for name, value in bound.items():
            if value is None:
                self.unknown.add(name)
                self.trusted.pop(name, None)
            else:
                self.trusted[name] = value
                self.unknown.discard(name)
        self.imports.append((stmt, set(bound)))

    def _module(self, dotted: str) -> TrustedModule | None:
        return trusted_scope.module_for(dotted, self.numpy_allowed)

    def _static(self, node: ast.expr) -> Any:
        """What a name, a module attribute or `TestCase()` stands for on the trusted side, or None."""
        if isinstance(node, ast.Name):
            try:
                return self.scope.lookup(node.id)
            except KeyError:
                return None
        if isinstance(node, ast.Attribute):
            owner = self._static(node.value)
            return owner.attrs.get(node.attr) if isinstance(owner, TrustedModule) else None
        if isinstance(node, ast.Call) and not node.args and not node.keywords:
            return trusted_scope.TESTCASE if isinstance(self._static(node.func), TestCaseMarker) else None
        return None

    # -- checks

    def _split_value(self, node: ast.expr) -> ast.expr:
        return self._split_check([node])[0]

    def _split_check(self, nodes: list[ast.expr]) -> list[ast.expr]:
        """Splits the expressions of one check; its holes must compute the thing under test and nothing else."""
        first = len(self.holes)
        splitter = _Splitter(self.scope, self.holes, self._static)
        outer = [splitter.split(node) for node in nodes]
        holes = self.holes[first:]
        if any(_decides_or_reveals(h) for h in holes) or (holes and not self._one_subject(holes)):
            raise _Unsplittable
        return outer

    def _call_statement(self, call: ast.Call) -> ast.expr:
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(self._static(func.value), TestCaseInstance):
            method = unittest_checks.canonical(func.attr)
            if method in unittest_checks.RAISES:
                return self._raises_call(method, call)
            return self._method_check(method, call)
        if callable(self._static(func)) and not isinstance(self._static(func), TestCaseMarker):
            outer = self._split_value(call)
            assert isinstance(outer, ast.Call)
            return CallCheck(outer)
        raise _Unsplittable

    def _method_check(self, method: str, call: ast.Call) -> ast.expr:
        if method not in unittest_checks.CHECKS or any(isinstance(a, ast.Starred) for a in call.args):
            raise _Unsplittable
        _, params = unittest_checks.CHECKS[method]
        extra = unittest_checks.EXTRA_KEYWORDS.get(method, ())
        order = unittest_checks.positional(method)
        if len(call.args) > len(order):
            raise _Unsplittable
        values = {name: arg for name, arg in zip(order, call.args, strict=False) if name != "msg"}
        for kw in call.keywords:
            if kw.arg == "msg":
                continue  # a message is never evaluated: it would only run candidate code
            if kw.arg not in (*params, *extra) or kw.arg in values:
                raise _Unsplittable
            values[kw.arg] = kw.value
        if any(p not in values for p in params):
            raise _Unsplittable
        names = [*params, *(k for k in extra if k in values)]
        split = dict(zip(names, self._split_check([values[n] for n in names]), strict=True))
        return MethodCheck(method, [split[p] for p in params], {k: split[k] for k in extra if k in values})

    def _raises_call(self, method: str, call: ast.Call) -> ast.expr:
        """`assertRaises(exc, func, *args, **kwargs)` (or the Regex variant with its pattern second)."""
        fixed = 2 if method == "assertRaisesRegex" else 1
        if len(call.args) <= fixed or any(isinstance(a, ast.Starred) for a in call.args):
            raise _Unsplittable  # the context-manager form only works in a with block
        exc, pattern = self._trusted_arg(call.args[0]), self._trusted_arg(call.args[1]) if fixed == 2 else None
        func, args = call.args[fixed], call.args[fixed + 1:]
        keywords = [k for k in call.keywords if k.arg != "msg"]
        if isinstance(func, ast.Lambda) and not args and not keywords and not _has_params(func):
            body = func.body
        else:
            body = ast.Call(func=func, args=list(args), keywords=keywords)
        return Raises(exc, pattern, [self._raising_hole(body)])

    def _raises_block(self, stmt: ast.With) -> ast.expr:
        if len(stmt.items) != 1 or stmt.items[0].optional_vars is not None:
            raise _Unsplittable
        manager = stmt.items[0].context_expr
        if not (isinstance(manager, ast.Call) and isinstance(manager.func, ast.Attribute)
                and isinstance(self._static(manager.func.value), TestCaseInstance)):
            raise _Unsplittable
        method = unittest_checks.canonical(manager.func.attr)
        fixed = 2 if method == "assertRaisesRegex" else 1
        if (method not in unittest_checks.RAISES or len(manager.args) != fixed
                or any(k.arg != "msg" for k in manager.keywords)):
            raise _Unsplittable
        if not all(isinstance(s, ast.Expr) for s in stmt.body):
            raise _Unsplittable
        exc = self._trusted_arg(manager.args[0])
        pattern = self._trusted_arg(manager.args[1]) if fixed == 2 else None
        return Raises(exc, pattern, [self._raising_hole(s.value) for s in stmt.body])  # type: ignore[attr-defined]

    def _trusted_arg(self, node: ast.expr) -> ast.expr:
        """An argument the judge evaluates entirely (the exception class, a pattern): no holes in it."""
        first = len(self.holes)
        outer = _Splitter(self.scope, self.holes, self._static).split(node)
        if len(self.holes) != first:
            raise _Unsplittable
        return outer

    def _raising_hole(self, node: ast.expr) -> int:
        """A block statement expected to raise: run whole in the sandbox; only what it raised is judged."""
        if not _uses_candidate_names(node, self.trusted.keys() | self.unknown) or not self._one_subject([node]):
            raise _Unsplittable
        self.holes.append(node)
        return len(self.holes) - 1

    def _one_subject(self, holes: list[ast.expr]) -> bool:
        """Every hole of one check must compute the thing under test, never part of the expected side.

        Holes must share one root name (`f(3) == g(3)`, `f(3) == Point(1, 2)` and `f(1) == math.tau`
        compute the expected value with candidate-controlled code), the root must not be a module the
        candidate could patch (`math.factorial(5)`, a name the test imported), no call may take another
        candidate call's result as argument (`helper(f(1), [...])` decides inside), no predicate method may
        be asked of the candidate's value (`f("abc").startswith("cb")`) and no dunder called
        (`f(1).__eq__(2)`): the candidate's object could answer those.
        """
        roots = {_root_name(h) for h in holes}
        if len(roots) != 1 or None in roots:
            return False
        imported = {name for _, names in self.imports for name in names}
        if any(_root_is_module_access(h, imported) for h in holes):
            return False
        for node in (n for h in holes for n in ast.walk(h)):
            if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
                return False
            if isinstance(node, ast.Call):
                arguments = [*node.args, *(k.value for k in node.keywords)]
                inner = [n for a in arguments for n in ast.walk(a) if isinstance(n, ast.Call)]
                if any(_uses_candidate_names(n, ()) for n in inner):  # `set()` as an argument is fine
                    return False
                if isinstance(node.func, ast.Attribute) and node.func.attr in PREDICATE_METHODS and arguments:
                    return False
        return True


class _Splitter:
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
            raise _Unsplittable
        if self.repeated:  # Python would call it once per iteration (a generator is used up, state moves on)
            raise _Unsplittable
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
            return all(_simple_target(g.target) and not g.is_async for g in node.generators)
        if isinstance(node, ast.Lambda):
            return not _has_params(node, allow_positional=True)
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
            return func.attr in PREDICATE_METHODS and bool(node.args or node.keywords) and _is_value(func.value)
        if isinstance(func, ast.Name) and func.id in self.locals:
            return False
        target = self.static(func)
        return callable(target) and not isinstance(target, (TrustedModule, TestCaseInstance))


def _is_value(node: ast.expr) -> bool:
    """A method's receiver: anything but a bare name that might be the candidate's object or module."""
    return not isinstance(node, ast.Name)


def _simple_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Name):
        return True
    return isinstance(target, (ast.Tuple, ast.List)) and all(_simple_target(t) for t in target.elts)


def _has_params(node: ast.Lambda, allow_positional: bool = False) -> bool:
    """Whether the lambda takes parameters beyond what the judge supports (plain positional ones)."""
    a = node.args
    extra = a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults or a.kw_defaults
    return bool(extra) or (bool(a.args) and not allow_positional)


def _uses_candidate_names(node: ast.expr, test_bound: Any) -> bool:
    free = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return bool(free - _BUILTIN_NAMES - set(test_bound))


def _decides_or_reveals(hole: ast.expr) -> bool:
    """A hole that compares inside, or that uses no candidate-defined name (so it computes part of the
    expected value, e.g. `[x * 2 for x in range(3)]`), would let the sandbox judge."""
    nodes = list(ast.walk(hole))
    if any(isinstance(n, (ast.Compare, ast.BoolOp, ast.Lambda)) for n in nodes):
        return True
    bound = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    free = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound
    return not (free - _BUILTIN_NAMES)


_BUILTIN_NAMES = frozenset(dir(builtins))


def _root_is_module_access(node: ast.expr, imported: set[str]) -> bool:
    """`math.factorial(5)`: an attribute of a stdlib module or of a name the test imported (a candidate
    function named `random` is fine)."""
    parent: ast.expr | None = None
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        parent = node
        node = node.func if isinstance(node, ast.Call) else node.value
    if not isinstance(node, ast.Name):
        return False
    return node.id in imported or (node.id in sys.stdlib_module_names and isinstance(parent, ast.Attribute))


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None
