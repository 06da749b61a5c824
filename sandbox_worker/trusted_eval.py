"""The trusted evaluator: judges a split test's checks over the plain values its holes produced.

Runs in the process that holds the expected values, never in the candidate's. It evaluates the outer
expression tree `assertions.plan_test` built, in which every candidate-side sub-expression was replaced by
a `Hole`. Names resolve through `trusted_scope` (the real builtins and modules, never the candidate's),
methods only on values of exact builtin types, and everything that could be made costly by the values
(huge powers, repeated sequences, comprehensions over long results, colliding hashes) is bounded: the
judge answers `TestExpressionError` instead of stalling.
"""

from __future__ import annotations

import ast
import collections
import operator
import re
from collections.abc import Callable, Iterator
from typing import Any

from acecoder_reward.sandbox_worker import trusted_scope, unittest_checks
from acecoder_reward.sandbox_worker.plain_data import Opaque, check_hashing
from acecoder_reward.sandbox_worker.trusted_scope import Scope, TestCaseInstance, TestCaseMarker, TrustedModule

MAX_SEQUENCE = 10_000_000
# Work per test: evaluated nodes, comprehension iterations, and the elements a builtin or method walks in C
# (`x in seq`, `seq.count(x)`, `sum(seq)`), so a loop over a long result cannot run for minutes.
MAX_STEPS = 2_000_000
# printf-style widths or precisions of 5+ digits (or `*`) would let a format string build huge strings.
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(\*|\d{5,}|\d*\.(\*|\d{5,}))")


class TestExpressionError(Exception):
    """The trusted outer expression failed (a type error, or it would be too costly to evaluate)."""


class HoleFailed(Exception):
    """A hole raised inside the sandbox; evaluating the outer expression needs it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


CheckFailed = unittest_checks.CheckFailed


class HoleError:
    """What a hole that raised reports: its message and the builtin exception classes it derives from."""

    __slots__ = ("classes", "message")

    def __init__(self, message: str, classes: tuple[str, ...] = ()) -> None:
        self.message = message
        self.classes = classes


# --- the nodes plan_test puts in the outer tree ------------------------------------------------------

class Hole(ast.expr):
    """The value of holes[index], computed in the sandbox."""

    _fields = ("index",)

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


class Checks(ast.expr):
    """A test's checks in order; the first that fails decides, as the first failing statement would."""

    _fields = ("checks",)

    def __init__(self, checks: list[ast.expr]) -> None:
        super().__init__()
        self.checks = checks


class Truth(ast.expr):
    """`assert expr`."""

    _fields = ("expr",)

    def __init__(self, expr: ast.expr) -> None:
        super().__init__()
        self.expr = expr


class MethodCheck(ast.expr):
    """`TestCase().assertX(args)`: unittest_checks.CHECKS[method] over the evaluated arguments."""

    _fields = ("method", "args", "keywords")

    def __init__(self, method: str, args: list[ast.expr], keywords: dict[str, ast.expr]) -> None:
        super().__init__()
        self.method, self.args, self.keywords = method, args, keywords


class CallCheck(ast.expr):
    """A trusted assertion function called as a statement (`numpy.testing.assert_allclose(...)`)."""

    _fields = ("call",)

    def __init__(self, call: ast.Call) -> None:
        super().__init__()
        self.call = call


class Raises(ast.expr):
    """`with TestCase().assertRaises(exc): <holes>` or `assertRaises(exc, func, *args)`: the first hole
    that raised must have raised `exc` (by its builtin classes), with `pattern` found in its message."""

    _fields = ("exc", "pattern", "holes")

    def __init__(self, exc: ast.expr, pattern: ast.expr | None, holes: list[int]) -> None:
        super().__init__()
        self.exc, self.pattern, self.holes = exc, pattern, holes


# --- pure methods of exact builtin types -------------------------------------------------------------

_STR_METHODS = ("capitalize casefold count encode endswith find index isalnum isalpha isascii isdecimal isdigit "
                "isidentifier islower isnumeric isprintable isspace istitle isupper join lower lstrip partition "
                "removeprefix removesuffix replace rfind rindex rpartition rsplit rstrip split splitlines "
                "startswith strip swapcase title upper")
PURE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(_STR_METHODS.split()),
    bytes: frozenset((_STR_METHODS.replace("encode", "decode hex")).split()) - {"casefold", "isdecimal",
                                                                               "isidentifier", "isnumeric",
                                                                               "isprintable"},
    list: frozenset({"count", "index", "copy"}),
    tuple: frozenset({"count", "index"}),
    dict: frozenset({"get", "keys", "values", "items", "copy"}),
    set: frozenset({"issubset", "issuperset", "isdisjoint", "union", "intersection", "difference",
                    "symmetric_difference", "copy"}),
    frozenset: frozenset({"issubset", "issuperset", "isdisjoint", "union", "intersection", "difference",
                          "symmetric_difference", "copy"}),
    int: frozenset({"bit_length", "bit_count", "conjugate"}),
    float: frozenset({"is_integer", "conjugate", "hex"}),
    complex: frozenset({"conjugate"}),
}
ALL_PURE_METHODS = frozenset().union(*PURE_METHODS.values())
# Methods that answer a yes/no question about their receiver: on the candidate's value, only the judge asks.
PREDICATE_METHODS = frozenset({name for name in ALL_PURE_METHODS if name.startswith("is")}
                              | {"startswith", "endswith", "issubset", "issuperset", "isdisjoint"})

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
# Trusted functions whose cost grows with their arguments' values, checked like the operators they are.
_OPERATOR_COSTS: dict[Any, type] = {
    operator.mul: ast.Mult, operator.pow: ast.Pow, pow: ast.Pow, operator.lshift: ast.LShift,
    operator.mod: ast.Mod, operator.concat: ast.Add, operator.floordiv: ast.FloorDiv, operator.truediv: ast.Div,
    divmod: ast.FloorDiv,
}
_HASHING = frozenset({set, frozenset, dict, collections.Counter, collections.OrderedDict})


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
        _check_hashing(elements)
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
                self._step(_size(right))
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
            self._step(_size(value))
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
        self._step(sum(_size(a) for a in args))
        _check_call(func, args, kwargs)
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
        widest = max((_size(a) for a in args), default=1)
        if name in ("replace", "join") and _size(receiver) * widest > 4 * MAX_SEQUENCE:
            raise TestExpressionError("string too large to evaluate")
        self._step(_size(receiver) + sum(_size(a) for a in args))
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
        _check_hashing(out)
        return set(out)

    def _eval_DictComp(self, node: ast.DictComp) -> Any:
        pairs: list[tuple[Any, Any]] = []
        saved = dict(self.locals)
        try:
            self._iterate(node.generators, lambda: pairs.append((self._eval(node.key), self._eval(node.value))))
        finally:
            self.locals = saved
        _check_hashing([k for k, _ in pairs])
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


def _size(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 1


def _refuse_opaque_containers(method: str, args: list[Any]) -> None:
    if method in ("assertIn", "assertNotIn", "assertCountEqual", "assertSequenceEqual") and any(
            isinstance(a, Opaque) for a in args):
        raise TestExpressionError("a result of a non-plain type cannot be judged")


def _check_hashing(items: list[Any]) -> None:
    """Values built to share one hash cost quadratic time to put in a set or dict: refused."""
    try:
        check_hashing(items)
    except TypeError:
        return  # unhashable: the constructor raises the same TypeError
    except ValueError as exc:
        raise TestExpressionError(str(exc)) from exc




def _check_call(func: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    if any(isinstance(a, Opaque) for a in args):
        raise TestExpressionError("a result of a non-plain type cannot be judged")
    if func in (str, int, repr) and args and isinstance(args[0], (int, str)) and len(str(args[0])) > 5000:
        raise TestExpressionError("value too large to convert")
    if any(isinstance(a, range) and len(a) > MAX_SEQUENCE for a in args):
        raise TestExpressionError("range too large to evaluate")
    if func in _HASHING and args and not isinstance(args[0], (set, frozenset, dict, str, bytes)):
        items = list(args[0].keys()) if isinstance(args[0], dict) else list(args[0])
        _check_hashing([i[0] if func in (dict, collections.OrderedDict) and isinstance(i, (tuple, list)) and i
                        else i for i in items])
    if func is pow and len(args) == 3:
        return  # modular: cheap whatever the exponent
    if func in _OPERATOR_COSTS and len(args) == 2:
        check_cost(_OPERATOR_COSTS[func], args[0], args[1])
    bits = [a.bit_length() for a in _flat_ints(args) if isinstance(a, int)]
    if func in _QUADRATIC and bits and max(bits) ** 2 > MAX_QUADRATIC_COST:
        raise TestExpressionError("integers too large to evaluate")
    if func is _MATH["prod"] and sum(bits) > MAX_PRODUCT_BITS:
        raise TestExpressionError("product too large to evaluate")
    if func in _FACTORIAL_LIKE and any(isinstance(a, int) and a > 100_000 for a in args):
        raise TestExpressionError("argument too large to evaluate")


def _flat_ints(args: list[Any]) -> list[Any]:
    """The arguments and, one level down, their elements (math.prod(seq), math.lcm(*seq))."""
    out: list[Any] = []
    for a in args:
        out.extend(a if isinstance(a, (list, tuple)) else (a,))
    return out


# Big ints: operations whose cost grows with the product of the operands' bits are refused past this many
# bit-products (about 0.1 s here); a 100,000-digit result divided by a small number stays fine.
MAX_QUADRATIC_COST = 1 << 36
MAX_PRODUCT_BITS = 1 << 20
_MATH = trusted_scope.STDLIB_MODULES["math"].attrs
_QUADRATIC = frozenset({_MATH["gcd"], _MATH["lcm"], _MATH["isqrt"]})
_FACTORIAL_LIKE = frozenset(_MATH[n] for n in ("factorial", "comb", "perm"))


def check_cost(op: type, left: Any, right: Any) -> None:
    """Refuses arithmetic that would make the judge itself slow or huge (`[0] * 10**10`, `2 ** 10**9`)."""
    if (op is ast.Pow and isinstance(left, int) and isinstance(right, int) and right > 0
            and abs(left) > 1 and right * max(left.bit_length(), 1) > 1_000_000):
        raise TestExpressionError("power too large to evaluate")
    if op is ast.LShift and isinstance(right, int) and right > 1_000_000:
        raise TestExpressionError("shift too large to evaluate")
    if op in (ast.FloorDiv, ast.Mod, ast.Div, ast.Mult) and isinstance(left, int) and isinstance(right, int):
        cost = left.bit_length() * right.bit_length()
        if cost > (MAX_QUADRATIC_COST << 6 if op is ast.Mult else MAX_QUADRATIC_COST):  # Karatsuba: cheaper
            raise TestExpressionError("integers too large to evaluate")
    if op is ast.Mod and isinstance(left, (str, bytes)):
        text = left if isinstance(left, str) else left.decode("latin-1")
        if _WIDE_FORMAT.search(text):
            raise TestExpressionError("format string too wide to evaluate")
    if op is ast.Mult:
        for seq, count in ((left, right), (right, left)):
            if (isinstance(seq, (str, bytes, list, tuple)) and isinstance(count, int)
                    and len(seq) * count > MAX_SEQUENCE):
                raise TestExpressionError("sequence too large to evaluate")
