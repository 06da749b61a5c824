"""The trusted evaluator: judges a split test's checks over the plain values its holes produced.

Runs in the process that holds the expected values, never in the candidate's. It evaluates the outer
expression tree `assertions.plan_test` built, in which every candidate-side sub-expression was replaced by
a `Hole`. Names resolve through `trusted_scope` (the real builtins and modules, never the candidate's),
methods only on values of exact builtin types, and everything that could be made costly by the values
(huge powers, repeated sequences, comprehensions over long results, colliding hashes) is bounded (a step
budget here, judge_costs for single operations): the judge answers `TestExpressionError` instead of stalling.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterator
from typing import Any

from acecoder_reward.sandbox_worker import trusted_scope, unittest_checks
from acecoder_reward.sandbox_worker.check_nodes import (
    PURE_METHODS,
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
from acecoder_reward.sandbox_worker.judge_costs import MAX_SEQUENCE, check_call, check_cost, refuse_colliding, size_of
from acecoder_reward.sandbox_worker.plain_data import Opaque
from acecoder_reward.sandbox_worker.trusted_scope import Scope, TestCaseInstance, TestCaseMarker, TrustedModule

# Work per test: evaluated nodes, comprehension iterations, and the elements a builtin or method walks in C
# (`x in seq`, `seq.count(x)`, `sum(seq)`), so a loop over a long result cannot run for minutes.
MAX_STEPS = 2_000_000


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_, ast.BitXor: operator.xor, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert,
}


def evaluate(outer: ast.expr, scope: Scope, hole_values: list[tuple[bool, Any]]) -> bool:
    """Judges the outer tree: True/False for the checks, or raises CheckFailed, HoleFailed or
    TestExpressionError."""
    result = _Evaluator(scope, hole_values).eval(outer)
    try:
        return bool(result)
    except Exception as exc:  # an opaque result of unknown truthiness, an array of several values
        raise TestExpressionError(f"{type(exc).__name__}: {exc}"[:500]) from exc


class _Evaluator:
    def __init__(self, scope: Scope, hole_values: list[tuple[bool, Any]]) -> None:
        self.scope = scope
        self.hole_values = hole_values
        self.locals: dict[str, Any] = {}
        self.steps = 0

    def eval(self, node: ast.expr) -> Any:
        try:
            return self._eval(node)
        except (HoleFailed, TestExpressionError, CheckFailed):
            raise
        except RecursionError as exc:
            raise TestExpressionError("test expression too deep") from exc
        except Exception as exc:  # the test itself raised on these plain values, e.g. None < 3
            raise TestExpressionError(f"{type(exc).__name__}: {exc}"[:500]) from exc

    def _step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise TestExpressionError("test expression too costly to evaluate")

    def _eval(self, node: ast.expr) -> Any:
        self._step()
        method = getattr(self, "_eval_" + type(node).__name__)
        return method(node)

    # -- checks

    def _eval_Checks(self, node: Checks) -> bool:
        return all(self._eval(check) for check in node.checks)

    def _eval_Truth(self, node: Truth) -> Any:
        return self._eval(node.expr)

    def _eval_MethodCheck(self, node: MethodCheck) -> bool:
        args = [self._eval(a) for a in node.args]
        kwargs = {k: self._eval(v) for k, v in node.keywords.items()}
        _refuse_opaque_containers(node.method, args)
        unittest_checks.check(node.method, args, kwargs)
        return True

    def _eval_CallCheck(self, node: CallCheck) -> bool:
        try:
            self._eval(node.call)
        except AssertionError as exc:  # how numpy.testing's functions say the check is false
            raise CheckFailed(str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "check failed") from None
        return True

    def _eval_Raises(self, node: Raises) -> bool:
        expected = self._eval(node.exc)
        classes = expected if isinstance(expected, tuple) else (expected,)
        if not all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
            raise TestExpressionError("assertRaises needs exception classes")
        for index in node.holes:
            ok, value = self.hole_values[index]
            if ok:
                continue
            error = value if isinstance(value, HoleError) else HoleError(str(value))
            if not error.classes:  # no exception of the candidate's: the hole's result could not be sent
                continue
            raised = [trusted_scope.EXCEPTIONS[c] for c in error.classes if c in trusted_scope.EXCEPTIONS]
            if not any(issubclass(r, classes) for r in raised):
                raise HoleFailed(error.message)  # another exception propagates, as it would in unittest
            if node.pattern is not None:
                message = error.message.partition(": ")[2]
                if not unittest_checks.search(self._eval(node.pattern), message):
                    raise CheckFailed("the exception's message does not match the pattern")
            return True
        raise CheckFailed(f"{' or '.join(c.__name__ for c in classes)} not raised")

    # -- expressions

    def _eval_Hole(self, node: Hole) -> Any:
        ok, value = self.hole_values[node.index]
        if not ok:
            raise HoleFailed(value.message if isinstance(value, HoleError) else str(value))
        return value

    def _eval_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _elements(self, elts: list[ast.expr]) -> list[Any]:
        out: list[Any] = []
        for e in elts:
            if isinstance(e, ast.Starred):  # [*f(2), 3]
                out.extend(self._eval(e.value))
            else:
                out.append(self._eval(e))
        return out

    def _eval_List(self, node: ast.List) -> Any:
        return self._elements(node.elts)

    def _eval_Tuple(self, node: ast.Tuple) -> Any:
        return tuple(self._elements(node.elts))

    def _eval_Set(self, node: ast.Set) -> Any:
        elements = self._elements(node.elts)
        refuse_colliding(elements)
        return set(elements)

    def _eval_Dict(self, node: ast.Dict) -> Any:
        if any(k is None for k in node.keys):
            raise TestExpressionError("dict unpacking is not supported in tests")
        return {self._eval(k): self._eval(v) for k, v in zip(node.keys, node.values, strict=False)}  # type: ignore[arg-type]

    def _eval_Name(self, node: ast.Name) -> Any:
        if node.id in self.locals:
            return self.locals[node.id]
        try:
            return self.scope.lookup(node.id)
        except KeyError:
            raise TestExpressionError(f"name {node.id!r} is not available to the judge") from None

    def _eval_Attribute(self, node: ast.Attribute) -> Any:
        owner = self._eval(node.value)
        if isinstance(owner, TrustedModule) and node.attr in owner.attrs:
            return owner.attrs[node.attr]
        raise TestExpressionError(f"attribute {node.attr!r} is not available to the judge")

    def _eval_UnaryOp(self, node: ast.UnaryOp) -> Any:
        return _UNARY[type(node.op)](self._eval(node.operand))

    def _eval_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self._eval(node.left), self._eval(node.right)
        check_cost(type(node.op), left, right)
        return _BINOPS[type(node.op)](left, right)

    def _eval_BoolOp(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for operand in node.values:
            value = self._eval(operand)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _eval_Compare(self, node: ast.Compare) -> Any:
        """As Python: `a < b` is the comparison's own result (a numpy array stays one); a chain is the
        `and` of its links."""
        left = self._eval(node.left)
        last = len(node.ops) - 1
        for k, (op, comparator) in enumerate(zip(node.ops, node.comparators, strict=True)):
            right = self._eval(comparator)
            if isinstance(op, (ast.In, ast.NotIn)):
                self._step(size_of(right))
            result = _CMPOPS[type(op)](left, right)
            if k == last or not result:
                return result
            left = right
        raise AssertionError("unreachable")

    def _eval_IfExp(self, node: ast.IfExp) -> Any:
        return self._eval(node.body) if self._eval(node.test) else self._eval(node.orelse)

    def _eval_Subscript(self, node: ast.Subscript) -> Any:
        value = self._eval(node.value)[self._eval(node.slice)]
        if isinstance(node.slice, ast.Slice):
            self._step(size_of(value))
        return value

    def _eval_Slice(self, node: ast.Slice) -> Any:
        parts = [None if p is None else self._eval(p) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def _eval_Starred(self, node: ast.Starred) -> Any:
        raise TestExpressionError("starred expression in an unsupported place")

    def _eval_Call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Attribute) and not _names_module(node.func.value, self):
            return self._method_call(node)
        func = self._eval(node.func)
        args = self._elements(node.args)
        kwargs = {str(k.arg): self._eval(k.value) for k in node.keywords}
        if isinstance(func, TestCaseMarker):
            return trusted_scope.TESTCASE
        if not callable(func) or isinstance(func, (TestCaseInstance, TrustedModule)):
            raise TestExpressionError("not a function the judge can call")
        args = [list(a) if isinstance(a, Iterator) else a for a in args]  # iterators: measured, then walked
        self._step(sum(size_of(a) for a in args))
        check_call(func, args, kwargs)
        return func(*args, **kwargs)

    def _method_call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Attribute)
        receiver = self._eval(node.func.value)
        name = node.func.attr
        if name not in PURE_METHODS.get(type(receiver), ()):
            if isinstance(receiver, Opaque):
                raise TestExpressionError("a result of a non-plain type cannot be judged")
            raise TestExpressionError(f"method {name!r} of {type(receiver).__name__} is not available to the judge")
        args = self._elements(node.args)
        kwargs = {str(k.arg): self._eval(k.value) for k in node.keywords}
        if any(isinstance(a, Opaque) for a in args):
            raise TestExpressionError("a result of a non-plain type cannot be judged")
        widest = max((size_of(a) for a in args), default=1)
        if name in ("replace", "join") and size_of(receiver) * widest > 4 * MAX_SEQUENCE:
            raise TestExpressionError("string too large to evaluate")
        self._step(size_of(receiver) + sum(size_of(a) for a in args))
        return getattr(receiver, name)(*args, **kwargs)

    # -- comprehensions and lambdas: locals live in self.locals for their extent

    def _iterate(self, generators: list[ast.comprehension], emit: Callable[[], None], level: int = 0) -> None:
        if level == len(generators):
            emit()
            return
        gen = generators[level]
        iterable = self._eval(gen.iter)
        if isinstance(iterable, Opaque):
            raise TestExpressionError("a result of a non-plain type cannot be iterated by the judge")
        for item in iterable:
            self._step()
            self._bind(gen.target, item)
            if all(self._eval(cond) for cond in gen.ifs):
                self._iterate(generators, emit, level + 1)

    def _bind(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.locals[target.id] = value
            return
        assert isinstance(target, (ast.Tuple, ast.List))
        values = list(value)
        if len(values) != len(target.elts):
            raise ValueError(f"cannot unpack {len(values)} values into {len(target.elts)} names")
        for t, v in zip(target.elts, values, strict=True):
            self._bind(t, v)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp, out: list[Any]) -> None:
        saved = dict(self.locals)
        try:
            self._iterate(node.generators, lambda: out.append(self._eval(node.elt)))
        finally:
            self.locals = saved

    def _eval_ListComp(self, node: ast.ListComp) -> Any:
        out: list[Any] = []
        self._comprehension(node, out)
        return out

    def _eval_GeneratorExp(self, node: ast.GeneratorExp) -> Any:
        out: list[Any] = []  # evaluated eagerly: all()/any() see the same values, only without short-circuit
        self._comprehension(node, out)
        return iter(out)

    def _eval_SetComp(self, node: ast.SetComp) -> Any:
        out: list[Any] = []
        self._comprehension(node, out)
        refuse_colliding(out)
        return set(out)

    def _eval_DictComp(self, node: ast.DictComp) -> Any:
        pairs: list[tuple[Any, Any]] = []
        saved = dict(self.locals)
        try:
            self._iterate(node.generators, lambda: pairs.append((self._eval(node.key), self._eval(node.value))))
        finally:
            self.locals = saved
        refuse_colliding([k for k, _ in pairs])
        return dict(pairs)

    def _eval_Lambda(self, node: ast.Lambda) -> Any:
        names = [a.arg for a in node.args.args]

        def call(*values: Any) -> Any:
            if len(values) != len(names):
                raise TypeError("wrong number of arguments to a test's lambda")
            saved = dict(self.locals)
            self.locals.update(zip(names, values, strict=True))
            try:
                return self._eval(node.body)
            finally:
                self.locals = saved
        return call


def _names_module(node: ast.expr, evaluator: _Evaluator) -> bool:
    """Whether `node` (the owner of an attribute) is a trusted module, as opposed to a value."""
    if isinstance(node, ast.Name) and node.id not in evaluator.locals:
        return isinstance(evaluator.scope.trusted.get(node.id, trusted_scope.STDLIB_MODULES.get(node.id)),
                          (TrustedModule, TestCaseInstance)) and node.id not in evaluator.scope.unknown
    if isinstance(node, ast.Attribute):
        return _names_module(node.value, evaluator)
    return False


def _refuse_opaque_containers(method: str, args: list[Any]) -> None:
    if method in ("assertIn", "assertNotIn", "assertCountEqual", "assertSequenceEqual") and any(
            isinstance(a, Opaque) for a in args):
        raise TestExpressionError("a result of a non-plain type cannot be judged")
