"""Bearer-token auth, on the real gateway: every route but /health and /metrics needs a configured token."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Gateway, start_gateway, stop_gateway

TOKENS = ["old-token-canary", "new-token-canary"]
ITEM = {"items": [{"response": "def f(): return 1", "tests": ["assert f() == 1"]}]}


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("auth"), {"ACECODER_AUTH_TOKENS": json.dumps(TOKENS)})
    yield gw
    stop_gateway(gw)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer"},
                                     {"Authorization": f"Basic {TOKENS[0]}"}, {"Authorization": TOKENS[0]},
                                     {"Authorization": f"Bearer {TOKENS[0]}x"}],
                         ids=["none", "wrong", "empty", "basic", "no-scheme", "longer"])
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/rewards"), ("GET", "/openapi.json"),
                                              ("GET", "/docs"), ("GET", "/no-such-route")])
def test_protected_routes_refuse_without_the_right_token(authed: Gateway, headers: dict[str, str], method: str,
                                                         path: str) -> None:
    answer = httpx.request(method, authed.url + path, headers=headers, json=ITEM if method == "POST" else None)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    error = answer.json()["error"]
    assert error["code"] == "unauthorized" and "Authorization: Bearer" in error["message"]


@pytest.mark.parametrize("token", TOKENS)
def test_every_configured_token_works(authed: Gateway, token: str) -> None:
    answer = httpx.post(authed.url + "/v1/rewards", json=ITEM, headers={"Authorization": f"bearer {token}"})
    assert answer.status_code == 200 and answer.json()["rewards"] == [1.0]


def test_health_and_metrics_stay_open_and_refusals_are_counted(authed: Gateway) -> None:
    assert httpx.get(authed.url + "/health").status_code == 200
    metrics = httpx.get(authed.url + "/metrics")
    assert metrics.status_code == 200
    assert 'code="401"' in metrics.text


def test_the_body_is_not_read_before_auth(authed: Gateway) -> None:
    """An unauthenticated upload over the body limit is refused for its missing token, not its size."""
    answer = httpx.post(authed.url + "/v1/rewards", content=b"x" * (65 * 1024 * 1024))
    assert answer.status_code == 401
