"""Bounds on what the trusted judge computes: the candidate's values must never make it slow or huge.

Each check raises `TestExpressionError` (the test is an `error`) before an operation whose cost the values
would blow up: huge powers, shifts and repetitions, wide printf formats, quadratic big-int arithmetic,
values built to share one hash, conversions of huge ints.
"""

from __future__ import annotations

import ast
import collections
import operator
import re
from typing import Any

from acecoder_reward.sandbox_worker import trusted_scope
from acecoder_reward.sandbox_worker.check_nodes import TestExpressionError
from acecoder_reward.sandbox_worker.plain_data import Opaque, check_hashing

MAX_SEQUENCE = 10_000_000
# printf-style widths or precisions of 5+ digits (or `*`) would let a format string build huge strings.
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(\*|\d{5,}|\d*\.(\*|\d{5,}))")
# Trusted functions whose cost grows with their arguments' values, checked like the operators they are.
_OPERATOR_COSTS: dict[Any, type] = {
    operator.mul: ast.Mult, operator.pow: ast.Pow, pow: ast.Pow, operator.lshift: ast.LShift,
    operator.mod: ast.Mod, operator.concat: ast.Add, operator.floordiv: ast.FloorDiv, operator.truediv: ast.Div,
    divmod: ast.FloorDiv,
}
_HASHING = frozenset({set, frozenset, dict, collections.Counter, collections.OrderedDict})


def size_of(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 1


def refuse_colliding(items: list[Any]) -> None:
    """Values built to share one hash cost quadratic time to put in a set or dict: refused."""
    try:
        check_hashing(items)
    except TypeError:
        return  # unhashable: the constructor raises the same TypeError
    except ValueError as exc:
        raise TestExpressionError(str(exc)) from exc




def check_call(func: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    if any(isinstance(a, Opaque) for a in args):
        raise TestExpressionError("a result of a non-plain type cannot be judged")
    if func in (str, int, repr) and args and isinstance(args[0], (int, str)) and len(str(args[0])) > 5000:
        raise TestExpressionError("value too large to convert")
    if any(isinstance(a, range) and len(a) > MAX_SEQUENCE for a in args):
        raise TestExpressionError("range too large to evaluate")
    if func in _HASHING and args and not isinstance(args[0], (set, frozenset, dict, str, bytes)):
        items = list(args[0].keys()) if isinstance(args[0], dict) else list(args[0])
        refuse_colliding([i[0] if func in (dict, collections.OrderedDict) and isinstance(i, (tuple, list)) and i
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
