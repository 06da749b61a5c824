"""Unit tests for sandbox_worker.plain_data: exact-type round trips, Opaque markers, encode/decode limits."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from acecoder_reward.sandbox_worker.plain_data import MAX_DEPTH, MAX_NODES, EncodeError, Opaque, decode, dumps, encode


def _round_trip(value: Any) -> Any:
    """encode -> JSON bytes -> json.loads -> decode: the path a hole value takes out of the sandbox."""
    return decode(json.loads(dumps(encode(value))))


def _same(a: Any, b: Any) -> bool:
    """Structural equality that also demands identical types at every level (and nan/-0.0 identity)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (float, complex)):
        return repr(a) == repr(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _same(ka, kb) and _same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    if isinstance(a, (set, frozenset)):
        return sorted(map(repr, a)) == sorted(map(repr, b)) and a == b
    return bool(a == b)


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


ROUND_TRIP_VALUES: list[Any] = [
    0, 1, -1, 7, 2**64, -(2**200) + 3, 10**1000, -(10**1000),
    0.0, -0.0, 1.5, -2.25, 1e308, 5e-324, math.inf, -math.inf, math.nan, 0.1 + 0.2,
    "", "abc", "ünïcödé ✓", "with \"quotes\" and \n newline",
    b"", b"\x00\xffbytes", complex(1, -2), complex(-0.0, math.inf),
    [], (), [1, 2], (1, 2), (1,), [(1, 2), [3, (4,)]],
    set(), frozenset(), {1, 2, 3}, frozenset({"a", (1, 2)}), {frozenset({1}), (2, 3)},
    {}, {"a": 1}, {(1, 2): "t", 3: [4]}, {None: None, True: False, 1.5: b"x", "k": {"n": (1,)}},
    None, True, False,
    [True, 1, 1.0, "1", b"1", None, (1,), [1], {1}, frozenset({1}), {1: 1}],
    {"deep": [({"x": [1, (2.5, {3})]},)]},
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=repr)
def test_round_trip_keeps_value_and_exact_types(value: Any) -> None:
    """Every plain value comes back equal and with the same exact type at every level."""
    assert _same(_round_trip(value), value)


@pytest.mark.parametrize(("a", "b"), [([1, 2], (1, 2)), ({1}, frozenset({1})), ("ab", b"ab"), (1, True),
                                      (1, 1.0), (0, False), (1.0, complex(1, 0))])
def test_round_trip_keeps_look_alike_types_apart(a: Any, b: Any) -> None:
    """list/tuple, set/frozenset, str/bytes, int/bool/float/complex stay distinguishable after the trip."""
    assert type(_round_trip(a)) is type(a)
    assert type(_round_trip(b)) is type(b)
    assert type(_round_trip(a)) is not type(_round_trip(b))


def test_round_trip_keeps_nan_and_signed_zero() -> None:
    """nan stays nan and -0.0 keeps its sign (math.copysign), not just `==`-equal."""
    assert math.isnan(_round_trip(math.nan))
    assert math.copysign(1.0, _round_trip(-0.0)) == -1.0
    assert math.copysign(1.0, _round_trip(0.0)) == 1.0


def test_encoded_message_is_strict_json() -> None:
    """dumps refuses bare NaN/Infinity, so non-finite floats must already be tagged text."""
    data = dumps(encode([math.nan, math.inf, -math.inf, 2**100]))
    assert b"NaN" not in data and b"Infinity" not in data
    json.loads(data)


class _MyInt(int):
    pass


class _MyFloat(float):
    pass


class _MyList(list):  # type: ignore[type-arg]
    pass


class _AlwaysEqual:
    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __bool__(self) -> bool:
        return True

    __hash__ = object.__hash__


NON_PLAIN: list[tuple[str, Callable[[], Any]]] = [
    ("int_subclass", lambda: _MyInt(5)),
    ("float_subclass", lambda: _MyFloat(1.5)),
    ("list_subclass", lambda: _MyList([1])),
    ("always_equal", _AlwaysEqual),
]
OTHERS: list[Any] = [5, 1.5, [1], (1,), "x", b"x", None, True, False, 0, [], {}, set()]


@pytest.mark.parametrize(("name", "make"), NON_PLAIN, ids=[n for n, _ in NON_PLAIN])
def test_non_plain_value_decodes_to_opaque(name: str, make: Callable[[], Any]) -> None:
    """Subclasses of builtins and objects with a rigged __eq__ become Opaque, never their look-alike value."""
    decoded = _round_trip(make())
    assert isinstance(decoded, Opaque)


@pytest.mark.parametrize(("name", "make"), NON_PLAIN, ids=[n for n, _ in NON_PLAIN])
@pytest.mark.parametrize("other", OTHERS, ids=repr)
def test_opaque_equals_nothing_from_either_side(name: str, make: Callable[[], Any], other: Any) -> None:
    """Opaque == x, x == Opaque are False and != is True, whichever operand Python asks first."""
    decoded = _round_trip(make())
    assert not (decoded == other)
    assert not (other == decoded)
    assert decoded != other
    assert other != decoded


@pytest.mark.parametrize(("name", "make"), NON_PLAIN, ids=[n for n, _ in NON_PLAIN])
def test_opaque_keeps_truthiness_and_is_not_equal_to_itself(name: str, make: Callable[[], Any]) -> None:
    """An Opaque carries the truthiness the sandbox saw and is not even equal to an Opaque of the same type."""
    decoded = _round_trip(make())
    again = _round_trip(make())
    assert bool(decoded) is bool(make())
    assert not (decoded == again)
    assert not (decoded == decoded)


def test_opaque_nested_in_container_breaks_equality() -> None:
    """A non-plain element inside a list/dict makes the whole container unequal to its look-alike."""
    assert _round_trip([_MyInt(1), 2]) != [1, 2]
    assert _round_trip({"k": _MyFloat(1.0)}) != {"k": 1.0}
    assert _round_trip((_AlwaysEqual(),)) != (1,)


def test_cyclic_list_raises_encode_error() -> None:
    """A self-containing list cannot be sent out; encode stops with EncodeError, not RecursionError."""
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(EncodeError):
        encode(cyclic)


def test_cyclic_dict_raises_encode_error() -> None:
    """Same for a dict that contains itself as a value."""
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(EncodeError):
        encode(cyclic)


def test_nesting_up_to_max_depth_round_trips() -> None:
    """MAX_DEPTH levels of nesting are still plain data."""
    value = _nested_list(MAX_DEPTH)
    assert _same(_round_trip(value), value)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, MAX_DEPTH * 5, 5000])
def test_too_deep_nesting_raises_encode_error(depth: int) -> None:
    """Deeper than MAX_DEPTH raises EncodeError (not RecursionError)."""
    with pytest.raises(EncodeError):
        encode(_nested_list(depth))


def test_too_many_nodes_raises_encode_error() -> None:
    """A value with more than MAX_NODES nodes is refused."""
    with pytest.raises(EncodeError):
        encode([0] * MAX_NODES)


def test_big_ints_round_trip() -> None:
    """Ints are capped by the bytes the run may send (its result budget), not by a digit count."""
    for value in (10**100_000, -(2**400_001) + 7):
        assert decode(json.loads(dumps(encode(value)))) == value


MALFORMED: list[Any] = [
    pytest.param({"zz": "1"}, id="unknown_tag"),
    pytest.param({"t": "abc"}, id="tuple_body_str"),
    pytest.param({"s": 5}, id="set_body_int"),
    pytest.param({"fs": {"a": 1}}, id="frozenset_body_dict"),
    pytest.param({"d": "x"}, id="dict_body_str"),
    pytest.param({"d": [5]}, id="dict_pair_not_list"),
    pytest.param({"d": [[1, 2, 3]]}, id="dict_pair_too_long"),
    pytest.param({"c": "1"}, id="complex_body_str"),
    pytest.param({"c": ["1.0"]}, id="complex_one_part"),
    pytest.param({"f": "abc"}, id="float_text_garbage"),
    pytest.param({"f": ""}, id="float_text_empty"),
    pytest.param({"f": 1.5}, id="float_not_text"),
    pytest.param({"f": "1" * 41}, id="float_text_too_long"),
    pytest.param({"f": "NaN"}, id="float_nan_wrong_spelling"),
    pytest.param({"i": "xyz"}, id="int_text_garbage"),
    pytest.param({"i": 12}, id="int_not_text"),
    pytest.param({"b": "!!not base64!!"}, id="bytes_bad_base64"),
    pytest.param(5, id="bare_json_number"),
    pytest.param(1.5, id="bare_json_float"),
    pytest.param({}, id="empty_object"),
    pytest.param({"i": "1", "f": "1.0"}, id="two_tags"),
    pytest.param(_nested_list(MAX_DEPTH + 5), id="too_deep"),
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_data_raises_value_error(data: Any) -> None:
    """decode() is fed bytes from the sandbox: any malformed shape must raise ValueError."""
    with pytest.raises(ValueError):
        decode(data)


@pytest.mark.parametrize("data", [
    pytest.param({"b": 5}, id="bytes_not_text"),
    pytest.param({"s": [[{"i": "1"}]]}, id="set_of_unhashable_list"),
    pytest.param({"fs": [{"d": []}]}, id="frozenset_of_unhashable_dict"),
    pytest.param({"d": [[[{"i": "1"}], {"i": "2"}]]}, id="dict_unhashable_key"),
])
def test_malformed_data_with_wrong_types_raises_value_error(data: Any) -> None:
    """Type-confused bodies are malformed data too; the docstring promises ValueError for them."""
    with pytest.raises(ValueError):
        decode(data)
