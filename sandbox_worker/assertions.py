"""Splitting a test assert into candidate-side holes and a trusted outer expression.

For `assert f(x) == y` the sandbox evaluates only `f(x)` (a "hole"); the outer expression `<hole> == y`,
which holds the expected value, stays on the trusted side and is evaluated there over the plain data the
sandbox sent back. The outer expression may use literals, arithmetic, comparisons, boolean logic,
subscripts and a short list of pure builtins; any sub-expression it cannot evaluate itself becomes a hole.

A test is judged in the sandbox (and reported as such) when it cannot be split that way: it is not a single
assert statement, or a hole would carry the decision (a comparison inside a comprehension, say) or is
made of constants only (it would reveal the expected value).
"""

from __future__ import annotations

import ast
import builtins
import math
import operator
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox_worker.plain_data import Opaque


class TestExpressionError(Exception):
    """The trusted outer expression failed (a type error, or it would be too costly to evaluate)."""


class HoleFailed(Exception):
    """A hole raised inside the sandbox; evaluating the outer expression needs it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class TestPlan:
    """How one test is run: `holes` go to the sandbox; `outer` (if any) is judged outside."""

    source: str
    holes: tuple[str, ...] = ()
    outer: ast.expr | None = None
    in_sandbox: bool = False
    invalid: str | None = None
    hole_nodes: tuple[ast.expr, ...] = field(default=(), repr=False)


# Pure functions the judge may apply to plain values. Names are resolved only when the test does not
# rebind them; a test is a single expression, so it cannot.
_SAFE_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "len": len, "sorted": sorted, "set": set, "frozenset": frozenset,
    "list": list, "tuple": tuple, "dict": dict, "sum": sum, "min": min, "max": max, "all": all, "any": any,
    "int": int, "float": float, "str": str, "bool": bool, "isinstance": isinstance, "type": type,
    "complex": complex, "bytes": bytes, "divmod": divmod, "reversed": lambda v: list(reversed(v)),
    "range": range, "zip": zip, "enumerate": enumerate,
}
_SAFE_NAMES: dict[str, Any] = {
    "int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict,
    "set": set, "frozenset": frozenset, "bytes": bytes, "complex": complex, "type": type,
}
_MATH_ATTRS = {
    "isclose": math.isclose, "fabs": math.fabs, "sqrt": math.sqrt, "floor": math.floor, "ceil": math.ceil,
    "pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan, "isnan": math.isnan, "isinf": math.isinf,
}
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
MAX_SEQUENCE = 10_000_000
# printf-style widths or precisions of 5+ digits (or `*`) would let a format string build huge strings.
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(\*|\d{5,}|\d*\.(\*|\d{5,}))")


def plan_test(source: str) -> TestPlan:
    """Parses one test and decides what runs in the sandbox and what is judged outside."""
    try:
        module = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return TestPlan(source, invalid=f"test does not parse: {type(exc).__name__}: {exc}"[:500])
    body = module.body
    if len(body) != 1 or not isinstance(body[0], ast.Assert):
        return TestPlan(source, holes=(source,), in_sandbox=True)
    holes: list[ast.expr] = []
    try:
        outer = _Splitter(holes).visit(body[0].test)
        if not holes or any(_decides_or_reveals(h) for h in holes) or not _one_subject(holes):
            return TestPlan(source, holes=(source,), in_sandbox=True)
        hole_src = tuple(ast.unparse(h) for h in holes)
    except RecursionError:
        # Nested deeper than the splitter's recursion goes (ast.parse takes ~1000s of `1 + 1 + ...`): the
        # whole test runs in the sandbox, where compiling it is bounded by the run's deadline and limits.
        return TestPlan(source, holes=(source,), in_sandbox=True)
    return TestPlan(source, holes=hole_src, outer=outer, hole_nodes=tuple(holes))


class _Hole(ast.expr):
    """Placeholder for the value of holes[index], computed in the sandbox."""

    _fields = ("index",)

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


class _Splitter(ast.NodeTransformer):
    """Replaces every sub-expression the judge cannot evaluate by a `_Hole`."""

    def __init__(self, holes: list[ast.expr]) -> None:
        self.holes = holes

    def _hole(self, node: ast.expr) -> ast.expr:
        self.holes.append(node)
        return _Hole(len(self.holes) - 1)

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.expr) and not _is_trusted_shape(node):
            return self._hole(node)
        return super().visit(node)

    def visit_Call(self, node: ast.Call) -> ast.Call:
        # The callee is a known-safe function name; only its arguments may hold holes.
        node.args = [self.visit(a) for a in node.args]
        for kw in node.keywords:
            kw.value = self.visit(kw.value)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.Attribute:
        return node  # only `math.<name>` reaches here

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return node  # only safe builtin type names reach here


def _is_trusted_shape(node: ast.expr) -> bool:
    if isinstance(node, (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.BinOp, ast.UnaryOp,
                         ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript, ast.Slice, ast.Starred)):
        return not isinstance(node, (ast.List, ast.Tuple)) or isinstance(node.ctx, ast.Load)
    if isinstance(node, ast.Name):
        return node.id in _SAFE_NAMES
    if isinstance(node, ast.Attribute):
        return _is_math_attr(node)
    if isinstance(node, ast.Call):
        func = node.func
        plain_func = (isinstance(func, ast.Name) and func.id in _SAFE_FUNCS) or _is_math_attr(func)
        return plain_func and not any(isinstance(a, ast.Starred) for a in node.args) and all(
            k.arg is not None and k.arg in ("rel_tol", "abs_tol", "reverse", "ndigits") for k in node.keywords)
    return False


def _is_math_attr(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math"
            and node.attr in _MATH_ATTRS)


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
_BUILTIN_METHODS = frozenset(name for kind in (str, bytes, list, tuple, dict, set, frozenset, int, float, complex)
                             for name in dir(kind))


def _one_subject(holes: list[ast.expr]) -> bool:
    """Every hole must compute the thing under test, never part of the expected side.

    Holes must share one root name (`f(3) == g(3)`, `f(3) == Point(1, 2)` and `f(1) == math.tau` compute
    the expected value with candidate-controlled code), the root must not be a stdlib module the candidate
    could patch (`math.factorial(5)`), no call may take another call's result as argument (`np.allclose(
    f(1), [...])` decides inside), and no method of a builtin type may be called with arguments or via a
    dunder (`f("abc").startswith("cb")`, `f(1).__eq__(2)`): the candidate's object could answer those.
    """
    roots = {_root_name(h) for h in holes}
    if len(roots) != 1 or None in roots:
        return False
    if any(_root_is_module_access(h) for h in holes):
        return False
    for node in (n for h in holes for n in ast.walk(h)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            return False
        if not isinstance(node, ast.Call):
            continue
        arguments = [*node.args, *(k.value for k in node.keywords)]
        if any(isinstance(n, ast.Call) for a in arguments for n in ast.walk(a)):
            return False
        if isinstance(node.func, ast.Attribute) and node.func.attr in _BUILTIN_METHODS and arguments:
            return False
    return True


def _root_is_module_access(node: ast.expr) -> bool:
    """`math.factorial(5)`: an attribute of a stdlib module (a candidate function named `random` is fine)."""
    parent: ast.expr | None = None
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        parent = node
        node = node.func if isinstance(node, ast.Call) else node.value
    return (isinstance(node, ast.Name) and node.id in sys.stdlib_module_names
            and isinstance(parent, ast.Attribute))


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def evaluate(plan: TestPlan, hole_values: list[tuple[bool, Any]]) -> bool:
    """Judges a split test from its holes' (ok, value-or-error-message) results; raises on errors."""
    assert plan.outer is not None
    result = _Evaluator(hole_values).eval(plan.outer)
    try:
        return bool(result)
    except TypeError as exc:  # an opaque result of unknown truthiness
        raise TestExpressionError(str(exc)) from exc


class _Evaluator:
    def __init__(self, hole_values: list[tuple[bool, Any]]) -> None:
        self.hole_values = hole_values

    def eval(self, node: ast.expr) -> Any:
        try:
            return self._eval(node)
        except (HoleFailed, TestExpressionError):
            raise
        except RecursionError as exc:
            raise TestExpressionError("test expression too deep") from exc
        except Exception as exc:  # the assert itself raised on these plain values, e.g. None < 3
            raise TestExpressionError(f"{type(exc).__name__}: {exc}") from exc

    def _eval(self, node: ast.expr) -> Any:
        method = getattr(self, "_eval_" + type(node).__name__)
        return method(node)

    def _eval__Hole(self, node: _Hole) -> Any:
        ok, value = self.hole_values[node.index]
        if not ok:
            raise HoleFailed(str(value))
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
        return set(self._elements(node.elts))

    def _eval_Dict(self, node: ast.Dict) -> Any:
        if any(k is None for k in node.keys):
            raise TestExpressionError("dict unpacking is not supported in tests")
        return {self._eval(k): self._eval(v) for k, v in zip(node.keys, node.values, strict=False)}  # type: ignore[arg-type]

    def _eval_Name(self, node: ast.Name) -> Any:
        return _SAFE_NAMES[node.id]

    def _eval_Attribute(self, node: ast.Attribute) -> Any:
        return _MATH_ATTRS[node.attr]

    def _eval_UnaryOp(self, node: ast.UnaryOp) -> Any:
        return _UNARY[type(node.op)](self._eval(node.operand))

    def _eval_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self._eval(node.left), self._eval(node.right)
        _check_cost(node.op, left, right)
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
        left = self._eval(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=False):
            right = self._eval(comparator)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True

    def _eval_IfExp(self, node: ast.IfExp) -> Any:
        return self._eval(node.body) if self._eval(node.test) else self._eval(node.orelse)

    def _eval_Subscript(self, node: ast.Subscript) -> Any:
        return self._eval(node.value)[self._eval(node.slice)]

    def _eval_Slice(self, node: ast.Slice) -> Any:
        parts = [None if p is None else self._eval(p) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def _eval_Call(self, node: ast.Call) -> Any:
        func = self._eval(node.func) if isinstance(node.func, ast.Attribute) else _SAFE_FUNCS[node.func.id]  # type: ignore[attr-defined]
        args = [self._eval(a) for a in node.args]
        kwargs = {str(k.arg): self._eval(k.value) for k in node.keywords}
        if any(isinstance(a, Opaque) for a in args):
            raise TestExpressionError("a result of a non-plain type cannot be judged")
        if func in (str, int) and args and isinstance(args[0], (int, str)) and len(str(args[0])) > 5000:
            raise TestExpressionError("value too large to convert")
        if any(isinstance(a, range) and len(a) > MAX_SEQUENCE for a in args):
            raise TestExpressionError("range too large to evaluate")
        return func(*args, **kwargs)


def _check_cost(op: ast.operator, left: Any, right: Any) -> None:
    """Refuses arithmetic that would make the judge itself slow or huge (`[0] * 10**10`, `2 ** 10**9`)."""
    if (isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and right > 0
            and abs(left) > 1 and right * max(left.bit_length(), 1) > 1_000_000):
        raise TestExpressionError("power too large to evaluate")
    if isinstance(op, ast.LShift) and isinstance(right, int) and right > 1_000_000:
        raise TestExpressionError("shift too large to evaluate")
    if isinstance(op, ast.Mod) and isinstance(left, (str, bytes)):
        text = left if isinstance(left, str) else left.decode("latin-1")
        if _WIDE_FORMAT.search(text):
            raise TestExpressionError("format string too wide to evaluate")
    if isinstance(op, ast.Mult):
        for seq, count in ((left, right), (right, left)):
            if (isinstance(seq, (str, bytes, list, tuple)) and isinstance(count, int)
                    and len(seq) * count > MAX_SEQUENCE):
                raise TestExpressionError("sequence too large to evaluate")
