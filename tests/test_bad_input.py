"""Bad input gets a clear 4xx JSON error naming the field: never a 500, never a hang."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Gateway, metrics

GOOD_ITEM = {"response": "def f(x):\n    return x\n", "tests": ["assert f(1) == 1"]}


def _error(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()["error"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "items"),
    ({"items": []}, "items"),
    ({"items": "abc"}, "items"),
    ({"items": [{"tests": ["assert 1"]}]}, "items.0.response"),
    ({"items": [{"response": 5, "tests": ["assert 1"]}]}, "items.0.response"),
    ({"items": [{"response": "x", "tests": []}]}, "items.0.tests"),
    ({"items": [{"response": "x", "tests": "assert 1"}]}, "items.0.tests"),
    ({"items": [{"response": "x", "tests": [1]}]}, "items.0.tests.0"),
    ({"items": [GOOD_ITEM], "reward": "bogus"}, "reward"),
    ({"items": [GOOD_ITEM], "tests_reward": "most"}, "tests_reward"),
    ({"items": [GOOD_ITEM], "limits": {"test_timeout_s": -1}}, "limits.test_timeout_s"),
    ({"items": [GOOD_ITEM], "limits": {"memory_mb": "lots"}}, "limits.memory_mb"),
    ({"items": [GOOD_ITEM], "unknown": 1}, "unknown"),
    ({"items": [{**GOOD_ITEM, "extra": 1}]}, "items.0.extra"),
])
def test_invalid_fields_are_named(client: httpx.Client, body: dict, field: str) -> None:
    error = _error(client.post("/v1/rewards", json=body), 422)
    assert error["field"] == field, error
    assert field in error["message"]


def test_malformed_json(client: httpx.Client) -> None:
    answer = client.post("/v1/rewards", content=b'{"items": [', headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422)
    error = _error(answer, answer.status_code)
    assert error["field"] == "body"


def test_non_utf8_bytes(client: httpx.Client) -> None:
    body = b'{"items": [{"response": "\xff\xfe", "tests": ["assert 1"]}]}'
    answer = client.post("/v1/rewards", content=body, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422)
    error = _error(answer, answer.status_code)
    assert error["field"] == "body"


def test_too_many_items(client: httpx.Client) -> None:
    error = _error(client.post("/v1/rewards", json={"items": [GOOD_ITEM] * 1025}), 422)
    assert error["field"] == "items"


def test_oversized_response_and_test(client: httpx.Client) -> None:
    error = _error(client.post("/v1/rewards", json={"items": [{**GOOD_ITEM, "response": "x" * 200_001}]}), 422)
    assert error["field"] == "items.0.response"
    error = _error(client.post("/v1/rewards", json={"items": [{**GOOD_ITEM, "tests": ["assert 1", "#" * 20_001]}]}),
                   422)
    assert error["field"] == "items.0.tests.1"
    error = _error(client.post("/v1/rewards", json={"items": [{**GOOD_ITEM, "tests": ["assert 1"] * 513}]}), 422)
    assert error["field"] == "items.0.tests"


def test_body_over_the_size_limit_is_refused_before_parsing(client: httpx.Client) -> None:
    huge = b"x" * (64 * 1024 * 1024 + 1)
    error = _error(client.post("/v1/rewards", content=huge, headers={"content-type": "application/json"}), 413)
    assert error["field"] == "body"


def test_unparsable_test_is_a_per_test_error_not_a_request_error(client: httpx.Client) -> None:
    answer = client.post("/v1/rewards", json={"items": [{**GOOD_ITEM, "tests": ["assert f(1) == 1", "assert (("]}]})
    assert answer.status_code == 200
    tests = answer.json()["items"][0]["tests"]
    assert tests["outcomes"] == ["pass", "error"]
    assert tests["details"][1].startswith("test does not parse")


def test_no_code_and_syntax_error(client: httpx.Client) -> None:
    items = [{"response": "I cannot solve this.", "tests": ["assert f(1) == 1"]},
             {"response": "```python\ndef f(x) return x\n```", "tests": ["assert f(1) == 1"]}]
    body = client.post("/v1/rewards", json={"items": items}).json()
    assert [i["tests"]["status"] for i in body["items"]] == ["no_code", "syntax_error"]
    assert body["rewards"] == [0.0, 0.0]
    assert body["items"][0]["tests"]["outcomes"] == ["not_run"]


def test_binary_reward_and_limits_are_capped(client: httpx.Client) -> None:
    item = {"response": "def f(x):\n    return x\n", "tests": ["assert f(1) == 1", "assert f(2) == 3"]}
    body = client.post("/v1/rewards", json={"items": [item, GOOD_ITEM], "tests_reward": "binary",
                                            "limits": {"test_timeout_s": 1e9, "program_timeout_s": 1e9,
                                                       "memory_mb": 10**9}}).json()
    assert body["rewards"] == [0.0, 1.0]


def test_metrics_count_requests_outcomes_and_kills(gateway: Gateway, client: httpx.Client) -> None:
    """Every series read as a change across one request: a series is printed once it exists, whatever its value."""
    rewards = 'acecoder_requests_total{code="200",route="/v1/rewards"}'
    latency = 'acecoder_request_latency_seconds_count{route="/v1/rewards"}'
    series = [rewards, latency, 'acecoder_sandbox_kills_total{reason="exited"}',
              *(f'acecoder_test_outcomes_total{{outcome="{o}"}}' for o in ("pass", "fail", "error"))]
    before = metrics(gateway.url)
    wrong = {"response": "def f(x):\n    return x\n", "tests": ["assert f(1) == 1", "assert f(2) == 2",
                                                                 "assert f(3) == 4"]}
    quits = {"response": "import os\ndef f(x):\n    os._exit(0)\n", "tests": ["assert f(1) == 1"]}
    assert client.post("/v1/rewards", json={"items": [GOOD_ITEM, wrong, quits]}).status_code == 200
    after = metrics(gateway.url)
    changed = dict(zip(series, (after.get(s, 0) - before.get(s, 0) for s in series), strict=True))
    # every test counted once, by its outcome; the run that quit mid-test was ended from outside
    assert changed == dict(zip(series, [1, 1, 1, len(GOOD_ITEM["tests"]) + 2, 1, 1], strict=True))
