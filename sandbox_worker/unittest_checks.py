"""unittest's assertion methods, evaluated by the trusted judge over plain data.

`unittest.TestCase().assertEqual(add(1, 2), 3)` is judged here with the candidate's call as a hole: the
method is the judge's, never the candidate's (which could have replaced every `TestCase.assert*`). On values
of ordinary size, `check` calls this process's own unittest.TestCase method, so the verdict is unittest's to
the last edge case. On large values it uses the functions below instead, which make the same comparisons
but skip the failure diff unittest builds (difflib over pretty-printed values: quadratic, and the values
are the candidate's). Regex patterns always run here, with a time limit. Failures are `CheckFailed` with a
short message that never echoes the values (a result can be megabytes).

Not here (their tests run in the sandbox): assertWarns, assertLogs, assertNoLogs (they observe the
candidate's process from inside) and assertRaises (judged by trusted_eval from the exception's classes).
"""

from __future__ import annotations

import collections
import unittest
from collections.abc import Callable
from typing import Any

import regex

from acecoder_reward.sandbox_worker.plain_data import check_hashing

MAX_PAIRWISE = 10_000_000  # assertCountEqual over unhashable elements compares pairs; past this, an error
REGEX_TIMEOUT_S = 0.5  # a test's pattern over a candidate's text must not stall the judge


class CheckFailed(Exception):
    """The check is false: unittest would raise AssertionError (the test fails)."""


def _fail_unless(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _equal(first: Any, second: Any) -> None:
    _fail_unless(first == second, "values differ")


def _not_equal(first: Any, second: Any) -> None:
    _fail_unless(first != second, "values are equal")


def _true(expr: Any) -> None:
    _fail_unless(bool(expr), "value is not true")


def _false(expr: Any) -> None:
    _fail_unless(not expr, "value is not false")


def _is(first: Any, second: Any) -> None:
    _fail_unless(first is second, "values are not identical")


def _is_not(first: Any, second: Any) -> None:
    _fail_unless(first is not second, "values are identical")


def _is_none(obj: Any) -> None:
    _fail_unless(obj is None, "value is not None")


def _is_not_none(obj: Any) -> None:
    _fail_unless(obj is not None, "value is None")


def _in(member: Any, container: Any) -> None:
    _fail_unless(member in container, "member not found in container")


def _not_in(member: Any, container: Any) -> None:
    _fail_unless(member not in container, "member unexpectedly found in container")


def _is_instance(obj: Any, cls: Any) -> None:
    _fail_unless(isinstance(obj, cls), "value is not an instance of the class")


def _not_is_instance(obj: Any, cls: Any) -> None:
    _fail_unless(not isinstance(obj, cls), "value is an instance of the class")


def _typed_equal(kind: type | tuple[type, ...], name: str) -> Callable[[Any, Any], None]:
    def check(first: Any, second: Any) -> None:
        _fail_unless(isinstance(first, kind), f"first argument is not a {name}")
        _fail_unless(isinstance(second, kind), f"second argument is not a {name}")
        _fail_unless(first == second, f"{name}s differ")
    return check


def _sequence_equal(first: Any, second: Any, seq_type: type | None = None) -> None:
    if seq_type is not None:
        _fail_unless(isinstance(first, seq_type), "first sequence is not of the given type")
        _fail_unless(isinstance(second, seq_type), "second sequence is not of the given type")
    try:
        len1, len2 = len(first), len(second)
    except (TypeError, NotImplementedError) as exc:
        raise CheckFailed("an argument is not a sequence") from exc
    if first == second:
        return
    _fail_unless(len1 == len2 and all(a == b for a, b in zip(first, second, strict=True)), "sequences differ")


def _count_equal(first: Any, second: Any) -> None:
    first_seq, second_seq = list(first), list(second)
    try:
        same = collections.Counter(first_seq) == collections.Counter(second_seq)
    except TypeError:  # unhashable elements: match them pairwise, as unittest does
        if len(first_seq) * len(second_seq) > MAX_PAIRWISE:
            raise ValueError("too many unhashable elements to compare") from None
        same = _pairwise_count_equal(first_seq, second_seq)
    _fail_unless(same, "element counts differ")


def _pairwise_count_equal(first: list[Any], second: list[Any]) -> bool:
    remaining = list(second)
    for item in first:
        for k, other in enumerate(remaining):
            if other == item:
                del remaining[k]
                break
        else:
            return False
    return not remaining


def _compare(op: Callable[[Any, Any], bool], what: str) -> Callable[[Any, Any], None]:
    def check(first: Any, second: Any) -> None:
        _fail_unless(op(first, second), f"first value is not {what} the second")
    return check


def _almost_equal(first: Any, second: Any, places: int | None = None, delta: Any = None) -> None:
    if first == second:
        return
    if delta is not None and places is not None:
        raise TypeError("specify delta or places not both")
    diff = abs(first - second)
    if delta is not None:
        _fail_unless(diff <= delta, "values differ by more than delta")
        return
    _fail_unless(round(diff, 7 if places is None else places) == 0, "values differ in the given places")


def _not_almost_equal(first: Any, second: Any, places: int | None = None, delta: Any = None) -> None:
    if delta is not None and places is not None:
        raise TypeError("specify delta or places not both")
    if delta is not None:
        _fail_unless(not (first == second) and abs(first - second) > delta,  # noqa: SIM201 (as unittest)
                     "values are within delta")
        return
    differs = not (first == second) and round(abs(first - second), 7 if places is None else places) != 0  # noqa: SIM201
    _fail_unless(differs, "values are almost equal")


def search(pattern: Any, text: Any) -> bool:
    """`re.search(pattern, text)` with a time limit (the `regex` module's, re-compatible by default)."""
    if not isinstance(text, (str, bytes)) or not isinstance(pattern, (str, bytes)):
        raise TypeError("expected a string or bytes pattern and text")
    try:
        return regex.search(pattern, text, timeout=REGEX_TIMEOUT_S) is not None
    except TimeoutError as exc:
        raise ValueError("the pattern took too long on this text") from exc


def _regex(text: Any, expected_regex: Any) -> None:
    _fail_unless(search(expected_regex, text), "text does not match the pattern")


def _not_regex(text: Any, unexpected_regex: Any) -> None:
    _fail_unless(not search(unexpected_regex, text), "text matches the pattern")


def _dict_contains_subset(subset: Any, dictionary: Any) -> None:
    _fail_unless(all(key in dictionary and dictionary[key] == value for key, value in subset.items()),
                 "dictionary does not contain the subset")


# method -> (check, names of its value parameters in order; `msg` follows them and is never evaluated)
CHECKS: dict[str, tuple[Callable[..., None], tuple[str, ...]]] = {
    "assertEqual": (_equal, ("first", "second")),
    "assertNotEqual": (_not_equal, ("first", "second")),
    "assertTrue": (_true, ("expr",)),
    "assertFalse": (_false, ("expr",)),
    "assertIs": (_is, ("first", "second")),
    "assertIsNot": (_is_not, ("first", "second")),
    "assertIsNone": (_is_none, ("obj",)),
    "assertIsNotNone": (_is_not_none, ("obj",)),
    "assertIn": (_in, ("member", "container")),
    "assertNotIn": (_not_in, ("member", "container")),
    "assertIsInstance": (_is_instance, ("obj", "cls")),
    "assertNotIsInstance": (_not_is_instance, ("obj", "cls")),
    "assertGreater": (_compare(lambda a, b: a > b, "greater than"), ("a", "b")),
    "assertGreaterEqual": (_compare(lambda a, b: a >= b, "greater than or equal to"), ("a", "b")),
    "assertLess": (_compare(lambda a, b: a < b, "less than"), ("a", "b")),
    "assertLessEqual": (_compare(lambda a, b: a <= b, "less than or equal to"), ("a", "b")),
    "assertListEqual": (_typed_equal(list, "list"), ("list1", "list2")),
    "assertTupleEqual": (_typed_equal(tuple, "tuple"), ("tuple1", "tuple2")),
    "assertSetEqual": (_typed_equal((set, frozenset), "set"), ("set1", "set2")),
    "assertDictEqual": (_typed_equal(dict, "dict"), ("d1", "d2")),
    "assertMultiLineEqual": (_typed_equal(str, "string"), ("first", "second")),
    "assertSequenceEqual": (_sequence_equal, ("seq1", "seq2")),
    "assertCountEqual": (_count_equal, ("first", "second")),
    "assertAlmostEqual": (_almost_equal, ("first", "second")),
    "assertNotAlmostEqual": (_not_almost_equal, ("first", "second")),
    "assertRegex": (_regex, ("text", "expected_regex")),
    "assertNotRegex": (_not_regex, ("text", "unexpected_regex")),
    "assertDictContainsSubset": (_dict_contains_subset, ("subset", "dictionary")),
}
# Optional parameters (besides msg) the checks take, and every positional parameter in unittest's order.
EXTRA_KEYWORDS = {"assertAlmostEqual": ("places", "delta"), "assertNotAlmostEqual": ("places", "delta"),
                  "assertSequenceEqual": ("seq_type",)}
_POSITIONAL = {"assertAlmostEqual": ("first", "second", "places", "msg", "delta"),
               "assertNotAlmostEqual": ("first", "second", "places", "msg", "delta"),
               "assertSequenceEqual": ("seq1", "seq2", "msg", "seq_type")}


def positional(method: str) -> tuple[str, ...]:
    """The names unittest binds positional arguments to, `msg` included."""
    return _POSITIONAL.get(method, (*CHECKS[method][1], "msg"))
# The deprecated aliases Python 3.11 still has.
ALIASES = {"assertEquals": "assertEqual", "failUnlessEqual": "assertEqual", "assertNotEquals": "assertNotEqual",
           "failIfEqual": "assertNotEqual", "assert_": "assertTrue", "failUnless": "assertTrue",
           "failIf": "assertFalse", "assertAlmostEquals": "assertAlmostEqual",
           "failUnlessAlmostEqual": "assertAlmostEqual", "assertNotAlmostEquals": "assertNotAlmostEqual",
           "failIfAlmostEqual": "assertNotAlmostEqual", "assertRegexpMatches": "assertRegex",
           "assertNotRegexpMatches": "assertNotRegex", "assertRaisesRegexp": "assertRaisesRegex",
           "failUnlessRaises": "assertRaises"}
RAISES = ("assertRaises", "assertRaisesRegex")


def canonical(method: str) -> str:
    return ALIASES.get(method, method)


SMALL_ELEMENTS = 2000  # values up to this many elements (all levels) are checked by unittest itself
_CASE = unittest.TestCase()
_OWN_ONLY = frozenset({"assertRegex", "assertNotRegex"})  # unittest would run the pattern without a limit


def check(method: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Runs the check; raises CheckFailed when it is false, TypeError/ValueError when it is misused."""
    if method == "assertCountEqual":  # it counts with a Counter: values built to collide would stall it
        for value in args[:2]:
            try:
                check_hashing(list(value))
            except TypeError:
                pass  # unhashable: compared pairwise, bounded by MAX_PAIRWISE
    if method not in _OWN_ONLY and _elements(args, SMALL_ELEMENTS) <= SMALL_ELEMENTS:
        try:
            getattr(_CASE, method)(*args, **kwargs)
        except AssertionError:
            raise CheckFailed(f"{method} failed") from None
        return
    function, _ = CHECKS[method]
    function(*args, **kwargs)


def _elements(value: Any, cap: int) -> int:
    """How many elements `value` holds at all levels, counting no further than `cap`."""
    count, stack = 0, [value]
    while stack and count <= cap:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, (str, bytes)):
            count += len(item) // 64
    return count
