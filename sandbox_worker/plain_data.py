"""Plain data with exact types: how candidate-side values leave the sandbox.

The sandbox encodes the values a test's candidate-side expressions produce; the judge decodes them in a
process the candidate never touched and compares them there. Only exact builtin types survive the trip
(`type(v) is int`, never `isinstance`): an int subclass or an object whose `__eq__` always returns True
becomes an `Opaque` marker that equals nothing. The encoding is tagged JSON so that tuple/list, set/frozenset,
bytes/str, big ints and non-finite floats keep their identity.

This module is imported inside the sandbox too, so it depends on the standard library only.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

# Bound at import: inside the sandbox the candidate may have patched the builtins by the time we encode.
_type, _repr, _format, _bool, _b64 = type, repr, format, bool, base64.b64encode
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
        return {"b": _b64(value).decode("ascii")}
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
        return {"d": [[_encode(k, depth + 1, budget), _encode(v, depth + 1, budget)] for k, v in value.items()]}
    try:
        truthy: bool | None = _bool(value)
    except Exception:
        truthy = None
    return {"x": [f"{kind.__module__}.{kind.__qualname__}"[:200], truthy]}


def _int_text(value: int) -> str:
    if value.bit_length() > 100_000:
        raise EncodeError("integer result too large")
    return _format(value, "x")


def decode(data: Any) -> Any:
    """Inverse of `encode`, run on the trusted side; malformed data raises ValueError."""
    try:
        return _decode(data, 0)
    except (KeyError, TypeError, binascii.Error) as exc:  # unknown tag, unhashable member, bad base64
        raise ValueError(f"malformed plain value: {exc}") from exc


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


def _decode_float(text: Any) -> float:
    if not isinstance(text, str) or len(text) > 40:
        raise ValueError("malformed float")
    value = float(text)
    if math.isnan(value) and text.strip("-+") != "nan":
        raise ValueError("malformed float")
    return value


def _decode_dict(body: Any, depth: int) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for pair in _as_list(body):
        key, value = _as_list(pair)
        out[_decode(key, depth + 1)] = _decode(value, depth + 1)
    return out


def _as_list(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise ValueError("malformed container")
    return body


def _decode_int(text: Any) -> int:
    if not isinstance(text, str) or len(text) > 30_000:
        raise ValueError("malformed int")
    return int(text, 16)


def _decode_complex(body: Any) -> complex:
    real, imag = _as_list(body)
    return complex(_decode_float(real), _decode_float(imag))


def _decode_opaque(body: Any) -> Opaque:
    name, truthy = _as_list(body)
    if not isinstance(name, str) or truthy not in (True, False, None):
        raise ValueError("malformed opaque value")
    return Opaque(name[:200], truthy)


_DECODERS: dict[str, Any] = {
    "i": lambda body, depth: _decode_int(body),
    "f": lambda body, depth: _decode_float(body),
    "b": lambda body, depth: base64.b64decode(body, validate=True),
    "c": lambda body, depth: _decode_complex(body),
    "t": lambda body, depth: tuple(_decode_items(body, depth)),
    "s": lambda body, depth: set(_decode_items(body, depth)),
    "fs": lambda body, depth: frozenset(_decode_items(body, depth)),
    "d": _decode_dict,
    "x": lambda body, depth: _decode_opaque(body),
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


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of an already-encoded message."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
