"""The published schema (/openapi.json) names each form an item's tests take, and a sample of each validates
against it; the server still takes and refuses what it did (the input/output forms are checked when the item is
read, with 422s that name the field: the schema only documents them)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

DOUBLE_FN = "def f(x):\n    return 2 * x\n"
DOUBLE_STDIN = "print(2 * int(input()))\n"
STDIO = {"inputs": ["2\n", ["3"]], "outputs": ["4\n", ["6"]]}

# name -> (the form's component, tests, extra item fields, program that passes them)
SAMPLES: dict[str, tuple[str, Any, dict[str, Any], str]] = {
    "asserts": ("AssertTests", ["assert f(2) == 4", "for x in range(3):\n    assert f(x) == x + x"], {}, DOUBLE_FN),
    "APPS stdin/stdout": ("IOTests", STDIO, {}, DOUBLE_STDIN),
    "APPS function call": ("IOTests", {"inputs": [[2], [3]], "outputs": [4, [6]], "fn_name": "f"}, {}, DOUBLE_FN),
    "APPS, the item's fn_name": ("IOTests", {"inputs": [[2]], "outputs": [4], "fn_name": None}, {"fn_name": "f"},
                                 DOUBLE_FN),
    "APPS as JSON text": ("IOTestsJSON", json.dumps(STDIO), {}, DOUBLE_STDIN),
    "LiveCodeBench as JSON text": ("IOTestsJSON", json.dumps([{"input": "2\n", "output": "4\n"}]), {}, DOUBLE_STDIN),
    "CodeContests": ("CodeContestsTests", {"input": ["2\n", "3\n"], "output": ["4\n", "6\n"], "is_public": True}, {},
                     DOUBLE_STDIN),
    "LiveCodeBench stdin": ("LiveCodeBenchTests", [{"input": "2\n", "output": "4\n", "testtype": "stdin"},
                                                   {"input": "3\n", "output": "6\n"}], {}, DOUBLE_STDIN),
    "LiveCodeBench functional": ("LiveCodeBenchTests", [{"input": "2", "output": "4", "testtype": "functional"},
                                                        {"input": "3", "output": 6, "testtype": "functional"}],
                                 {"fn_name": "f"}, DOUBLE_FN),
}
# Taken by the server, so the published schema must take them too (test_fuzz sends what it refuses): a false
# fn_name (the item's is used), keys io_tests does not read, stdout as lines.
EDGES: list[tuple[Any, dict[str, Any]]] = [
    *[({"inputs": [["1"]], "outputs": [["1"]], "fn_name": falsy}, {}) for falsy in (None, "", 0, False, [], {})],
    ({"inputs": [[1]], "outputs": [1], "fn_name": {}}, {"fn_name": "f"}),
    ({"input": ["1"], "output": ["1"], "fn_name": 5, "is_public": True}, {}),
    ([{"input": "1", "output": ["1"], "difficulty": "easy"}], {}),
    ([{"input": "[1]", "output": {"a": [1]}, "testtype": "functional"}], {"fn_name": "f"}),
]
NO_TEST = "items.0.tests: reward=tests needs at least one test"

FORMS = {"AssertTests", "IOTests", "IOTestsJSON", "CodeContestsTests", "LiveCodeBenchTests"}

# tests -> (field, message) of the 422 they got before the schema named the forms
MALFORMED: list[tuple[Any, str, str]] = [
    ([], "items.0.tests", NO_TEST),
    # Forms with no test in them: well formed (the schema takes them), but the tests reward needs one.
    ({"inputs": [], "outputs": []}, "items.0.tests", NO_TEST),
    ({"input": [], "output": [], "is_public": True}, "items.0.tests", NO_TEST),
    ("[]", "items.0.tests", NO_TEST),
    (5, "items.0.tests", "items.0.tests: Input should be a valid list"),
    (None, "items.0.tests", "items.0.tests: Input should be a valid list"),
    ([1], "items.0.tests.0", "items.0.tests.0: Input should be a valid string"),
    (["assert 1", {"b": 1}], "items.0.tests.1", "items.0.tests.1: Input should be a valid string"),
    ({"inputs": ["1"]}, "items.0.tests", "items.0.tests: inputs and outputs must be lists of the same length"),
    ({"inputs": "1", "outputs": "1"}, "items.0.tests",
     "items.0.tests: inputs and outputs must be lists of the same length"),
    ({"something": "else"}, "items.0.tests", "items.0.tests: expected inputs and outputs"),
    ({"inputs": [[1]], "outputs": [1], "fn_name": 3}, "items.0.tests", "items.0.tests: fn_name must be a string"),
    ("assert 1", "items.0.tests", "items.0.tests: not JSON: Expecting value: line 1 column 1 (char 0)"),
    ('["assert 1"]', "items.0.tests", "items.0.tests: 0: a LiveCodeBench test has input, output and testtype"),
    ([{"input": 1, "output": "1"}], "items.0.tests",
     "items.0.tests: 0: a LiveCodeBench test has input, output and testtype"),
    ([{"input": "1", "output": 5}], "items.0.tests", "items.0.tests: outputs.0: expected a string or a list of lines"),
    ([{"input": "1", "output": "1", "testtype": "other"}], "items.0.tests",
     "items.0.tests: 0: a functional test needs the item's fn_name (the row's metadata func_name)"),
    ([{"input": "1", "output": "1", "testtype": "functional"}], "items.0.tests",
     "items.0.tests: 0: a functional test needs the item's fn_name (the row's metadata func_name)"),
]
# Malformed by content, which the published schema cannot tell: a count, JSON text, or the item's fn_name.
CONTENT_ONLY = [[], {"inputs": [], "outputs": []}, {"input": [], "output": [], "is_public": True}, "[]", "assert 1",
                '["assert 1"]',
                [{"input": "1", "output": "1", "testtype": "functional"}]]
SCHEMA_REFUSES = [tests for tests, _, _ in MALFORMED if tests not in CONTENT_ONLY]


@pytest.fixture(scope="module")
def openapi(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    spec: dict[str, Any] = answer.json()
    return spec


def _validator(openapi: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema validator of `schema`, its $refs resolved within the published document."""
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator({**schema, "components": openapi["components"]})


def _component(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def test_each_form_of_an_items_tests_is_a_named_component(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    tests = schemas["RewardItem"]["properties"]["tests"]
    assert {ref["$ref"].removeprefix("#/components/schemas/") for ref in tests["anyOf"]} == FORMS
    for name in FORMS:
        assert schemas[name]["title"] == name
        assert schemas[name]["description"], name
        assert name in tests["description"]
    assert schemas["IOTests"]["required"] == ["inputs", "outputs"]
    assert set(schemas["IOTests"]["properties"]) == {"inputs", "outputs", "fn_name"}
    assert set(schemas["CodeContestsTests"]["required"]) == {"input", "output"}
    items = schemas["LiveCodeBenchTests"]["items"]["anyOf"]
    assert [schemas[ref["$ref"].rsplit("/", 1)[1]]["properties"]["testtype"]["const"] for ref in items] == [
        "stdin", "functional"]
    content = schemas["IOTestsJSON"]["contentSchema"]["anyOf"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in content} == FORMS - {"AssertTests", "IOTestsJSON"}
    assert schemas["IOTestsJSON"]["contentMediaType"] == "application/json"


def test_other_endpoints_name_the_same_forms(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert schemas["BestOfNRequest"]["properties"]["tests"]["$ref"] == "#/components/schemas/AssertTests"
    labels = schemas["OpenRLHFRequest"]["properties"]["labels"]["description"]
    assert all(name in labels for name in FORMS - {"IOTestsJSON"})


@pytest.mark.parametrize("name", list(SAMPLES))
def test_a_sample_of_each_form_validates_against_the_published_schema(openapi: dict[str, Any], name: str) -> None:
    form, tests, extra, program = SAMPLES[name]
    _validator(openapi, _component(form)).validate(tests)
    _validator(openapi, _component("RewardRequest")).validate(
        {"items": [{"response": program, "tests": tests, **extra}]})
    if form == "IOTestsJSON":  # contentSchema is an annotation, not checked by validators: the text's value is here
        content = openapi["components"]["schemas"]["IOTestsJSON"]["contentSchema"]
        _validator(openapi, content).validate(json.loads(tests))


@pytest.mark.parametrize(("tests", "extra"), EDGES, ids=[json.dumps(e[0]) for e in EDGES])
def test_edge_cases_the_server_takes_validate_against_the_schema(client: httpx.Client, openapi: dict[str, Any],
                                                                 tests: Any, extra: dict[str, Any]) -> None:
    item = {"response": "print(1)", "tests": tests, **extra}
    _validator(openapi, _component("RewardItem")).validate(item)
    answer = client.post("/v1/rewards", json={"items": [item], "cache": False})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("tests", SCHEMA_REFUSES, ids=json.dumps)
def test_the_published_schema_refuses_malformed_forms(openapi: dict[str, Any], tests: Any) -> None:
    assert not _validator(openapi, _component("RewardItem")).is_valid({"response": "x", "tests": tests})


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_form_is_taken_and_read(client: httpx.Client, name: str) -> None:
    _, tests, extra, program = SAMPLES[name]
    answer = client.post("/v1/rewards", json={"items": [{"response": program, "tests": tests, **extra}],
                                              "cache": False})
    assert answer.status_code == 200, answer.text
    result = answer.json()["items"][0]["tests"]
    assert result["outcomes"] and set(result["outcomes"]) == {"pass"}, result


@pytest.mark.parametrize(("tests", "field", "message"), MALFORMED, ids=[json.dumps(m[0]) for m in MALFORMED])
def test_malformed_tests_get_the_same_422(client: httpx.Client, tests: Any, field: str, message: str) -> None:
    answer = client.post("/v1/rewards", json={"items": [{"response": "print(1)", "tests": tests}]})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert (error["field"], error["message"]) == (field, message)


@pytest.mark.parametrize(("tests", "field", "message"), [
    ([{"inputs": []}], "tests.0", "tests.0: Input should be a valid string"),
    ("assert 1", "tests", "tests: Input should be a valid list"),
])
def test_best_of_n_still_takes_only_assert_tests(client: httpx.Client, tests: Any, field: str, message: str) -> None:
    answer = client.post("/v1/best-of-n", json={"question": "q", "candidates": ["print(1)"], "tests": tests})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert (error["field"], error["message"]) == (field, message)
