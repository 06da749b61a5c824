"""What the trusted judge may call: pure functions, modules and methods, resolved without the candidate.

A test's outer expression is evaluated in the gateway (or queue worker), never in the candidate's process,
over plain data that came out of the sandbox. The names it uses resolve here, to the real, unpatched
objects: `abs`, `math.isclose`, `operator.eq`, `numpy.allclose` are this process's own, so a candidate that
patched its copy of `math` or `builtins` changes nothing. Only what is listed here is callable: pure
functions over plain values, each bounded in cost (judge_costs) where its input could make
it slow.

A test's own imports (`import math`, `from math import isclose`, `import numpy as np`) bind names in a
`Scope`; an import of a module not listed here binds an unknown name, which the splitter then treats as
candidate-side (a hole) wherever it is used.
"""

from __future__ import annotations

import builtins
import cmath
import collections
import decimal
import fractions
import importlib
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Builtins the outer expression may call; `reversed` returns a list so the result is plain data.
SAFE_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "len": len, "sorted": sorted, "set": set, "frozenset": frozenset,
    "list": list, "tuple": tuple, "dict": dict, "sum": sum, "min": min, "max": max, "all": all, "any": any,
    "int": int, "float": float, "str": str, "bool": bool, "isinstance": isinstance, "type": type,
    "complex": complex, "bytes": bytes, "divmod": divmod, "reversed": lambda v: list(reversed(v)),
    "range": range, "zip": zip, "enumerate": enumerate, "repr": repr, "chr": chr, "ord": ord, "pow": pow,
}
# Builtin names usable as plain values (isinstance's second argument, type comparisons).
SAFE_VALUES: dict[str, Any] = {
    "int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict,
    "set": set, "frozenset": frozenset, "bytes": bytes, "complex": complex, "type": type, "None": None,
    "True": True, "False": False, "Ellipsis": Ellipsis, "NotImplemented": NotImplemented,
}
# Exception classes, for assertRaises and isinstance: every builtin one.
EXCEPTIONS: dict[str, type[BaseException]] = {
    name: value for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


@dataclass(frozen=True)
class TrustedModule:
    """A module the judge may use: only the listed attributes resolve."""

    name: str
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class TestCaseMarker:
    """`unittest.TestCase` (the class) as a name in a test; called, it gives a `TESTCASE` instance."""


@dataclass(frozen=True)
class TestCaseInstance:
    """`unittest.TestCase()`: its assert* methods are evaluated by unittest_checks."""


TESTCASE_CLASS = TestCaseMarker()
TESTCASE = TestCaseInstance()


def _attrs(module: Any, names: str) -> dict[str, Any]:
    return {name: getattr(module, name) for name in names.split() if hasattr(module, name)}


_MATH = _attrs(math, "acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh degrees dist e erf "
                     "erfc exp exp2 expm1 fabs factorial floor fmod frexp fsum gamma gcd hypot inf isclose isfinite "
                     "isinf isnan isqrt lcm ldexp lgamma log log10 log1p log2 modf nan nextafter perm pi pow prod "
                     "radians remainder sin sinh sqrt tan tanh tau trunc ulp")
_CMATH = _attrs(cmath, "isclose phase polar rect sqrt exp log log10 pi e inf nan isnan isinf isfinite")
_OPERATOR = _attrs(operator, "eq ne lt le gt ge not_ truth is_ is_not contains countOf indexOf add sub mul "
                             "truediv floordiv mod neg pos abs inv invert and_ or_ xor getitem concat")
_COLLECTIONS = _attrs(collections, "Counter OrderedDict deque")
_FRACTIONS = _attrs(fractions, "Fraction")
_DECIMAL = _attrs(decimal, "Decimal")
# numpy's comparisons, for tests that use them where runs may import numpy (ACECODER_SANDBOX_ALLOWED_MODULES).
_NUMPY_NAMES = "allclose isclose array_equal array_equiv array asarray all any pi e inf nan"
_NUMPY_TESTING_NAMES = "assert_allclose assert_array_equal assert_array_almost_equal assert_almost_equal assert_equal"

STDLIB_MODULES: dict[str, TrustedModule] = {
    "math": TrustedModule("math", _MATH), "cmath": TrustedModule("cmath", _CMATH),
    "operator": TrustedModule("operator", _OPERATOR), "collections": TrustedModule("collections", _COLLECTIONS),
    "fractions": TrustedModule("fractions", _FRACTIONS), "decimal": TrustedModule("decimal", _DECIMAL),
    "unittest": TrustedModule("unittest", {"TestCase": TESTCASE_CLASS}),
}


def numpy_modules() -> dict[str, TrustedModule]:
    """numpy and numpy.testing, when this process has numpy (the judge's copy, never the candidate's)."""
    try:
        numpy = importlib.import_module("numpy")
    except ImportError:
        return {}
    testing = TrustedModule("numpy.testing", _attrs(numpy.testing, _NUMPY_TESTING_NAMES))
    return {"numpy": TrustedModule("numpy", {**_attrs(numpy, _NUMPY_NAMES), "testing": testing}),
            "numpy.testing": testing}


@dataclass(frozen=True)
class Scope:
    """Names a test binds, resolved on the trusted side. `unknown` are bound to something the judge does
    not know (an unlisted module, a name from it): the splitter treats them as candidate-side."""

    trusted: Mapping[str, Any] = field(default_factory=dict)
    unknown: frozenset[str] = frozenset()

    def lookup(self, name: str) -> Any:
        """The trusted object `name` stands for, or raises KeyError."""
        if name in self.unknown:
            raise KeyError(name)
        if name in self.trusted:
            return self.trusted[name]
        if name in SAFE_VALUES:
            return SAFE_VALUES[name]
        if name in SAFE_FUNCS:
            return SAFE_FUNCS[name]
        if name in EXCEPTIONS:
            return EXCEPTIONS[name]
        if name == "math":  # bare `math.isclose(...)` in a test with no import: the real math, as before
            return STDLIB_MODULES["math"]
        raise KeyError(name)

    def knows(self, name: str) -> bool:
        try:
            self.lookup(name)
        except KeyError:
            return False
        return True


def module_for(name: str, numpy_allowed: bool) -> TrustedModule | None:
    """The trusted module for an imported dotted name, or None when the judge does not know it."""
    if name in STDLIB_MODULES:
        return STDLIB_MODULES[name]
    if numpy_allowed and name in ("numpy", "numpy.testing"):
        return _NUMPY.get(name)
    return None


_NUMPY: dict[str, TrustedModule] = {}


def enable_numpy() -> bool:
    """Loads the judge's numpy (once); False when it is not installed here."""
    if not _NUMPY:
        _NUMPY.update(numpy_modules())
    return bool(_NUMPY)
