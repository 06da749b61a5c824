"""Bearer-token auth, on the real gateway: every route but /health and /metrics needs a configured token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from acecoder_reward_client import AsyncRewardClient, InvalidRequestError, Item, RewardClient

from tests.conftest import Gateway, metrics, start_gateway, stop_gateway

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
    refused = 'acecoder_requests_total{code="401",route="unmatched"}'  # refused before routing
    before = metrics(authed.url).get(refused, 0)
    assert httpx.get(authed.url + "/health").status_code == 200
    assert httpx.get(authed.url + "/metrics").status_code == 200
    assert httpx.post(authed.url + "/v1/rewards", json=ITEM).status_code == 401
    assert metrics(authed.url)[refused] == before + 1


def test_the_client_sends_its_token_and_without_one_gets_the_typed_error(authed: Gateway) -> None:
    item = Item(response="def f(): return 1", tests=["assert f() == 1"])
    with RewardClient(authed.url, token=TOKENS[1]) as client:
        assert client.score([item]).rewards == [1.0]
    for token in (None, "wrong"):
        with RewardClient(authed.url, token=token) as client, pytest.raises(InvalidRequestError) as refused:
            client.score([item])
        assert (refused.value.status, refused.value.code) == (401, "unauthorized"), token


def test_the_async_client_sends_its_token(authed: Gateway) -> None:
    async def rewards(token: str | None) -> list[float]:
        async with AsyncRewardClient(authed.url, token=token) as client:
            return (await client.score([Item(response="def f(): return 1", tests=["assert f() == 1"])])).rewards

    assert asyncio.run(rewards(TOKENS[0])) == [1.0]
    with pytest.raises(InvalidRequestError) as refused:
        asyncio.run(rewards(None))
    assert refused.value.status == 401


def test_the_body_is_not_read_before_auth(authed: Gateway) -> None:
    """An unauthenticated upload over the body limit is refused for its missing token, not its size."""
    answer = httpx.post(authed.url + "/v1/rewards", content=b"x" * (65 * 1024 * 1024))
    assert answer.status_code == 401
