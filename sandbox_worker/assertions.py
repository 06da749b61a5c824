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
from dataclasses import dataclass, field
from typing import Any

from acecoder_reward.sandbox_worker import io_tests, trusted_eval, trusted_scope, unittest_checks
from acecoder_reward.sandbox_worker.check_nodes import (
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
from acecoder_reward.sandbox_worker.split_expr import (
    Splitter,
    Unsplittable,
    decides_or_reveals,
    has_params,
    root_is_module_access,
    root_name,
    uses_candidate_names,
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


def judged_on_a_clock(source: str) -> bool:
    """Whether the judge's verdict on this test may change from run to run: unittest's regex checks run their
    pattern over the candidate's text under a time limit (`unittest_checks.search`)."""
    return "Regex" in source


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
    except (Unsplittable, RecursionError):
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
                raise Unsplittable
            self._bind(stmt)
        elif isinstance(stmt, ast.Assert):
            self.checks.append(Truth(self._split_value(stmt.test)))
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            self.checks.append(self._call_statement(stmt.value))
        elif isinstance(stmt, ast.With):
            self.checks.append(self._raises_block(stmt))
        else:
            raise Unsplittable

    def plan(self, source: str) -> TestPlan | None:
        if not self.checks or not self.holes:
            return None  # nothing of the candidate's is checked: whatever it is, it runs whole
        used = {n.id for h in self.holes for n in ast.walk(h) if isinstance(n, ast.Name)}
        setup = "\n".join(ast.unparse(stmt) for stmt, names in self.imports if names & used) or None
        outer = self.checks[0] if len(self.checks) == 1 else Checks(self.checks)
        fails = not any(isinstance(n, (Raises, ast.BoolOp, ast.IfExp)) for n in ast.walk(outer))
        return TestPlan(source, holes=tuple(ast.unparse(h) for h in self.holes), outer=outer, setup=setup,
                        scope=self.scope, fails_if_raised=fails)

    # -- bindings

    def _bind(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            target = stmt.targets[0] if len(stmt.targets) == 1 else None
            if not isinstance(target, ast.Name) or not isinstance(self._static(stmt.value), TestCaseInstance):
                raise Unsplittable
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
                raise Unsplittable
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
        splitter = Splitter(self.scope, self.holes, self._static)
        outer = [splitter.split(node) for node in nodes]
        holes = self.holes[first:]
        if any(decides_or_reveals(h) for h in holes) or (holes and not self._one_subject(holes)):
            raise Unsplittable
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
        raise Unsplittable

    def _method_check(self, method: str, call: ast.Call) -> ast.expr:
        if method not in unittest_checks.CHECKS or any(isinstance(a, ast.Starred) for a in call.args):
            raise Unsplittable
        _, params = unittest_checks.CHECKS[method]
        extra = unittest_checks.EXTRA_KEYWORDS.get(method, ())
        order = unittest_checks.positional(method)
        if len(call.args) > len(order):
            raise Unsplittable
        values = {name: arg for name, arg in zip(order, call.args, strict=False) if name != "msg"}
        for kw in call.keywords:
            if kw.arg == "msg":
                continue  # a message is never evaluated: it would only run candidate code
            if kw.arg not in (*params, *extra) or kw.arg in values:
                raise Unsplittable
            values[kw.arg] = kw.value
        if any(p not in values for p in params):
            raise Unsplittable
        names = [*params, *(k for k in extra if k in values)]
        split = dict(zip(names, self._split_check([values[n] for n in names]), strict=True))
        return MethodCheck(method, [split[p] for p in params], {k: split[k] for k in extra if k in values})

    def _raises_call(self, method: str, call: ast.Call) -> ast.expr:
        """`assertRaises(exc, func, *args, **kwargs)` (or the Regex variant with its pattern second)."""
        fixed = 2 if method == "assertRaisesRegex" else 1
        if len(call.args) <= fixed or any(isinstance(a, ast.Starred) for a in call.args):
            raise Unsplittable  # the context-manager form only works in a with block
        exc, pattern = self._trusted_arg(call.args[0]), self._trusted_arg(call.args[1]) if fixed == 2 else None
        func, args = call.args[fixed], call.args[fixed + 1:]
        keywords = [k for k in call.keywords if k.arg != "msg"]
        if isinstance(func, ast.Lambda) and not args and not keywords and not has_params(func):
            body = func.body
        else:
            body = ast.Call(func=func, args=list(args), keywords=keywords)
        return Raises(exc, pattern, [self._raising_hole(body)])

    def _raises_block(self, stmt: ast.With) -> ast.expr:
        if len(stmt.items) != 1 or stmt.items[0].optional_vars is not None:
            raise Unsplittable
        manager = stmt.items[0].context_expr
        if not (isinstance(manager, ast.Call) and isinstance(manager.func, ast.Attribute)
                and isinstance(self._static(manager.func.value), TestCaseInstance)):
            raise Unsplittable
        method = unittest_checks.canonical(manager.func.attr)
        fixed = 2 if method == "assertRaisesRegex" else 1
        if (method not in unittest_checks.RAISES or len(manager.args) != fixed
                or any(k.arg != "msg" for k in manager.keywords)):
            raise Unsplittable
        if not all(isinstance(s, ast.Expr) for s in stmt.body):
            raise Unsplittable
        exc = self._trusted_arg(manager.args[0])
        pattern = self._trusted_arg(manager.args[1]) if fixed == 2 else None
        return Raises(exc, pattern, [self._raising_hole(s.value) for s in stmt.body])  # type: ignore[attr-defined]

    def _trusted_arg(self, node: ast.expr) -> ast.expr:
        """An argument the judge evaluates entirely (the exception class, a pattern): no holes in it."""
        first = len(self.holes)
        outer = Splitter(self.scope, self.holes, self._static).split(node)
        if len(self.holes) != first:
            raise Unsplittable
        return outer

    def _raising_hole(self, node: ast.expr) -> int:
        """A block statement expected to raise: run whole in the sandbox; only what it raised is judged."""
        test_bound = self.trusted.keys() | self.unknown
        if not uses_candidate_names(node, test_bound) or not self._one_subject([node]):
            raise Unsplittable
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
        roots = {root_name(h) for h in holes}
        if len(roots) != 1 or None in roots:
            return False
        imported = {name for _, names in self.imports for name in names}
        if any(root_is_module_access(h, imported) for h in holes):
            return False
        for node in (n for h in holes for n in ast.walk(h)):
            if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
                return False
            if isinstance(node, ast.Call):
                arguments = [*node.args, *(k.value for k in node.keywords)]
                inner = [n for a in arguments for n in ast.walk(a) if isinstance(n, ast.Call)]
                if any(uses_candidate_names(n, ()) for n in inner):  # `set()` as an argument is fine
                    return False
                if isinstance(node.func, ast.Attribute) and node.func.attr in PREDICATE_METHODS and arguments:
                    return False
        return True


