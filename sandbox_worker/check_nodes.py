"""The trusted judge's vocabulary: the nodes `assertions.plan_test` puts in a test's outer tree, the errors
evaluating it raises, and the methods of builtin types the judge may call on plain values."""

from __future__ import annotations

import ast

from acecoder_reward.sandbox_worker import unittest_checks


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
