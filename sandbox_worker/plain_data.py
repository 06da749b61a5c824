"""Plain data with exact types: how candidate-side values leave the sandbox.

The sandbox encodes the values a test's candidate-side expressions produce; the judge decodes them in a
process the candidate never touched and compares them there. Only exact builtin types survive the trip
(`type(v) is int`, never `isinstance`): an int subclass or an object whose `__eq__` always returns True
becomes an `Opaque` marker that equals nothing. The encoding is tagged JSON so that tuple/list, set/frozenset,
bytes/str, big ints and non-finite floats keep their identity.

This module is imported inside the sandbox too, so it depends on the standard library only.
"""

from __future__ import annotations

import binascii
import collections
import decimal
import fractions
import itertools
import json
import math
import types
from typing import Any

# Bound at import: inside the sandbox the candidate may have patched the builtins by the time we encode.
_type, _repr, _format, _bool, _b2a = type, repr, format, bool, binascii.b2a_base64
_str, _len, _tuple, _hasattr, _issubclass = str, len, tuple, hasattr, issubclass
_deque, _Fraction, _Decimal = collections.deque, fractions.Fraction, decimal.Decimal
_PAIR_TYPES = {collections.Counter: "ctr", collections.OrderedDict: "od", collections.defaultdict: "dd"}
_VIEW_TAGS = {type({}.keys()): "dk", type({}.values()): "dv", type({}.items()): "di"}
_ITERABLE_SAMPLES: tuple[Any, ...] = ([], (), "", b"", set(), {}, {}.values(), {}.items(), range(0), range(1 << 64))
_ITERATOR_TYPES = frozenset({
    types.GeneratorType, map, filter, zip, enumerate, reversed,
    *(type(iter(c)) for c in _ITERABLE_SAMPLES),
    itertools.count, itertools.cycle, itertools.repeat, itertools.chain, itertools.islice, itertools.accumulate,
    itertools.product, itertools.permutations, itertools.combinations, itertools.combinations_with_replacement,
    itertools.starmap, itertools.takewhile, itertools.dropwhile, itertools.zip_longest, itertools.filterfalse,
    itertools.compress, itertools.pairwise, itertools.groupby,
})
_NUMERIC_KINDS = "biufc"  # numpy arrays of these dtypes travel as (dtype, nested lists); others are opaque
MAX_DEPTH = 100
MAX_NODES = 200_000


class EncodeError(ValueError):
    """The value cannot be sent out as plain data (too deep, too big, cyclic)."""


class Opaque:
    """Stands in for a value of a non-plain type; equal to nothing, not even another Opaque.

    Its truthiness is the one the sandbox reported (`bool(value)` there): forging it gains nothing, since a
    program could return a plain value of either truthiness anyway. Unknown truthiness raises.
    """

    __slots__ = ("truthy", "type_name")

    def __init__(self, type_name: str, truthy: bool | None = None) -> None:
        self.type_name = type_name
        self.truthy = truthy

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        if self.truthy is None:
            raise TypeError(f"truthiness of a {self.type_name} result is unknown")
        return self.truthy

    def __repr__(self) -> str:
        return f"<opaque {self.type_name}>"


def encode(value: Any) -> Any:
    """Turns `value` into JSON-ready tagged data; raises EncodeError for cyclic or oversized values."""
    budget = [MAX_NODES]
    return _encode(value, 0, budget)


def _encode(value: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise EncodeError("result too large")
    if depth > MAX_DEPTH:
        raise EncodeError("result nested too deeply (or cyclic)")
    kind = _type(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        return {"i": _int_text(value)}
    if kind is float:
        return {"f": _repr(value)}
    if kind is str:
        return value
    if kind is bytes:
        return {"b": _b2a(value, newline=False).decode("ascii")}
    if kind is complex:
        return {"c": [_repr(value.real), _repr(value.imag)]}
    if kind is list:
        return [_encode(v, depth + 1, budget) for v in value]
    if kind is tuple:
        return {"t": [_encode(v, depth + 1, budget) for v in value]}
    if kind is set or kind is frozenset:
        tag = "s" if kind is set else "fs"
        return {tag: [_encode(v, depth + 1, budget) for v in value]}
    if kind is dict:
        return {"d": _pairs(value.items(), depth, budget)}
    stdlib = _encode_stdlib(value, kind, depth, budget)
    if stdlib is not None:
        return stdlib
    try:
        truthy: bool | None = _bool(value)
    except Exception:
        truthy = None
    return {"x": [f"{kind.__module__}.{kind.__qualname__}"[:200], truthy]}


def _pairs(items: Any, depth: int, budget: list[int]) -> list[list[Any]]:
    return [[_encode(k, depth + 1, budget), _encode(v, depth + 1, budget)] for k, v in items]


def _items(values: Any, depth: int, budget: list[int]) -> list[Any]:
    """Encodes the elements of any iterable, stopping at the budget (an endless generator is an error)."""
    out = []
    for v in values:
        out.append(_encode(v, depth + 1, budget))
    return out


def _encode_stdlib(value: Any, kind: type, depth: int, budget: list[int]) -> Any:
    """Common stdlib results travel as what they are, so the judge compares them as Python would:
    Counter/OrderedDict/defaultdict/deque/range/Fraction/Decimal, namedtuples (as tuples), dict views,
    iterators and generators (materialised), numpy scalars (as their Python value)."""
    if kind in _PAIR_TYPES:
        return {_PAIR_TYPES[kind]: _pairs(value.items(), depth, budget)}
    if kind is _deque:
        return {"dq": _items(value, depth, budget)}
    if kind is range:
        return {"r": [_encode(value.start, depth, budget), _encode(value.stop, depth, budget),
                      _encode(value.step, depth, budget)]}
    if kind is _Fraction:
        return {"fr": [_int_text(value.numerator), _int_text(value.denominator)]}
    if kind is _Decimal:
        text = _str(value)
        if _len(text) > 2000:
            raise EncodeError("decimal result too large")
        return {"dec": text}
    if _issubclass(kind, tuple) and _hasattr(kind, "_fields") and kind.__eq__ is tuple.__eq__:
        return {"t": _items(_tuple(value), depth, budget)}
    if kind in _VIEW_TAGS:
        tag = _VIEW_TAGS[kind]
        return {tag: _pairs(value, depth, budget) if tag == "di" else _items(value, depth, budget)}
    if kind in _ITERATOR_TYPES:
        return {"it": _items(value, depth, budget)}
    if kind.__module__ == "numpy" and kind.__name__ == "ndarray" and value.dtype.kind in _NUMERIC_KINDS:
        return {"nd": [_str(value.dtype.str)[:8], _encode(value.tolist(), depth, budget)]}
    if kind.__module__ == "numpy" and getattr(value, "ndim", None) == 0 and _hasattr(value, "item"):
        return _encode(value.item(), depth, budget)
    return None


def _int_text(value: int) -> str:
    # Hex is linear to write and to read back; the size is capped by the run's result budget (bytes sent).
    return _format(value, "x")


def decode(data: Any) -> Any:
    """Inverse of `encode`, run on the trusted side; malformed data raises ValueError."""
    try:
        return _decode(data, 0)
    except ValueError:
        raise
    except Exception as exc:  # unknown tag, unhashable member, bad base64, anything a forged frame provokes
        raise ValueError(f"malformed plain value: {type(exc).__name__}: {exc}"[:300]) from exc


def _decode(data: Any, depth: int) -> Any:
    if depth > MAX_DEPTH + 1:
        raise ValueError("nested too deeply")
    if data is None or isinstance(data, (bool, str)):
        return data
    if isinstance(data, list):
        return [_decode(v, depth + 1) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError("malformed plain value")
    ((tag, body),) = data.items()
    return _DECODERS[tag](body, depth)


def _decode_items(body: Any, depth: int) -> list[Any]:
    if not isinstance(body, list):
        raise ValueError("malformed container")
    return [_decode(v, depth + 1) for v in body]


COLLISION_CHECK_SIZE = 64
MAX_COLLIDING = 8  # distinct values sharing one hash; past it, hashing them all would cost quadratic time


def check_hashing(items: list[Any]) -> None:
    """Raises ValueError when `items` hold more than MAX_COLLIDING distinct values of one hash: a set or
    dict of values built to collide (ints a multiple of 2**61 - 1 apart) costs quadratic time to build,
    which would stall the judge. Equal values (duplicates) share a hash harmlessly and are not counted."""
    if len(items) <= COLLISION_CHECK_SIZE:
        return
    groups: dict[int, list[Any]] = {}
    for item in items:
        distinct = groups.setdefault(hash(item), [])
        if len(distinct) < MAX_COLLIDING and all(item != d for d in distinct):
            distinct.append(item)
        elif len(distinct) >= MAX_COLLIDING and all(item != d for d in distinct):
            raise ValueError("values built from colliding hashes")


def _hashable_items(body: Any, depth: int) -> list[Any]:
    """Set members or dict keys, refused when built to collide (see check_hashing)."""
    items = _decode_items(body, depth)
    check_hashing(items)
    return items


def _decode_pairs(body: Any, depth: int) -> list[tuple[Any, Any]]:
    pairs = []
    for pair in _as_list(body):
        key, value = _as_list(pair)
        pairs.append((key, value))
    keys = _hashable_items([k for k, _ in pairs], depth)
    return [(k, _decode(v, depth + 1)) for k, (_, v) in zip(keys, pairs, strict=True)]


MAX_RANGE_BITS = 64  # a range's bounds: wider ones make every element a big int (sum(range) stalls)
MAX_DECIMAL_EXPONENT = 5000  # int(Decimal('1e600000')) costs the judge quadratic time
MAX_FRACTION_BITS = 1 << 18  # the gcd that normalises a Fraction is superlinear in its bits


def _decode_range(body: Any) -> range:
    start, stop, step = (_decode(v, 0) for v in _as_list(body))
    if not all(type(v) is int and v.bit_length() <= MAX_RANGE_BITS for v in (start, stop, step)) or step == 0:
        raise ValueError("malformed range")
    return range(start, stop, step)


def _decode_fraction(body: Any) -> fractions.Fraction:
    numerator, denominator = (_decode_int(v) for v in _as_list(body))
    if denominator == 0 or max(numerator.bit_length(), denominator.bit_length()) > MAX_FRACTION_BITS:
        raise ValueError("malformed or oversized fraction")
    return fractions.Fraction(numerator, denominator)


def _decode_decimal(body: Any) -> decimal.Decimal:
    if not isinstance(body, str) or len(body) > 2000:
        raise ValueError("malformed decimal")
    try:
        value = decimal.Decimal(body)
    except decimal.InvalidOperation as exc:
        raise ValueError("malformed decimal") from exc
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and abs(exponent) > MAX_DECIMAL_EXPONENT:
        raise ValueError("decimal exponent too large")
    return value


def _decode_float(text: Any) -> float:
    if not isinstance(text, str) or len(text) > 40:
        raise ValueError("malformed float")
    value = float(text)
    if math.isnan(value) and text.strip("-+") != "nan":
        raise ValueError("malformed float")
    return value


def _decode_dict(body: Any, depth: int) -> dict[Any, Any]:
    return dict(_decode_pairs(body, depth))


def _as_list(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise ValueError("malformed container")
    return body


def _decode_int(text: Any) -> int:
    if not isinstance(text, str):
        raise ValueError("malformed int")
    return int(text, 16)  # linear in the text, which the run's result budget bounds


def _decode_complex(body: Any) -> complex:
    real, imag = _as_list(body)
    return complex(_decode_float(real), _decode_float(imag))


def _is_numeric_dtype(text: str) -> bool:
    """`<f8`, `|b1`, `i4`: byte order, a numeric kind, a size (nothing numpy would parse as more)."""
    body = text[1:] if text[:1] in ("<", ">", "|", "=") else text
    return 2 <= len(body) <= 3 and body[0] in _NUMERIC_KINDS and body[1:].isdigit() and body[1:].isascii()


def _decode_ndarray(body: Any, depth: int) -> Any:
    """A numpy array, rebuilt with the judge's numpy; without numpy here, an opaque value."""
    dtype, data = _as_list(body)
    if not isinstance(dtype, str) or not _is_numeric_dtype(dtype):
        raise ValueError("malformed array")
    values = _decode(data, depth + 1)
    try:
        import numpy
    except ImportError:
        return Opaque("numpy.ndarray")
    try:
        return numpy.array(values, dtype=numpy.dtype(dtype))
    except (ValueError, TypeError, OverflowError) as exc:  # ragged, or values that do not fit the dtype
        raise ValueError(f"malformed array: {exc}") from exc


def _decode_opaque(body: Any) -> Opaque:
    name, truthy = _as_list(body)
    if not isinstance(name, str) or truthy not in (True, False, None):
        raise ValueError("malformed opaque value")
    return Opaque(name[:200], truthy)


_DECODERS: dict[str, Any] = {
    "i": lambda body, depth: _decode_int(body),
    "f": lambda body, depth: _decode_float(body),
    # base64.b64decode(body, validate=True), without the base64 module in every run (see forker.py)
    "b": lambda body, depth: binascii.a2b_base64(body, strict_mode=True),
    "c": lambda body, depth: _decode_complex(body),
    "t": lambda body, depth: tuple(_decode_items(body, depth)),
    "s": lambda body, depth: set(_hashable_items(body, depth)),
    "fs": lambda body, depth: frozenset(_hashable_items(body, depth)),
    "ctr": lambda body, depth: collections.Counter(dict(_decode_pairs(body, depth))),
    "od": lambda body, depth: collections.OrderedDict(_decode_pairs(body, depth)),
    "dd": lambda body, depth: collections.defaultdict(None, _decode_pairs(body, depth)),
    "dq": lambda body, depth: collections.deque(_decode_items(body, depth)),
    "r": lambda body, depth: _decode_range(body),
    "fr": lambda body, depth: _decode_fraction(body),
    "dec": lambda body, depth: _decode_decimal(body),
    "dk": lambda body, depth: dict.fromkeys(_hashable_items(body, depth)).keys(),
    "dv": lambda body, depth: dict(enumerate(_decode_items(body, depth))).values(),
    "di": lambda body, depth: dict(_decode_pairs(body, depth)).items(),
    "it": lambda body, depth: iter(_decode_items(body, depth)),
    "d": _decode_dict,
    "x": lambda body, depth: _decode_opaque(body),
    "nd": _decode_ndarray,
}


def validate(data: Any) -> None:
    """Checks encoded data for depth and size without building it (cheap, and no hashing of hostile
    values): raises EncodeError past the limits `encode` keeps."""
    stack = [(data, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH + 2 or nodes > 2 * MAX_NODES:
            raise EncodeError("result too deep or too large")
        if isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())


# One encoder for all messages: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of an already-encoded message."""
    return _ENCODER.encode(value).encode()
