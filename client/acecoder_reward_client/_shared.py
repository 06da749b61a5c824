"""What the trainer-side reward functions share: one client per service URL, and reading tests from labels."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
from functools import cache
from typing import Any

from acecoder_reward_client.client import AsyncRewardClient, RewardClient

URL_ENV = "ACECODER_REWARD_URL"
TOKEN_ENV = "ACECODER_REWARD_TOKEN"


def service_url(url: str | None) -> str:
    resolved = url or os.environ.get(URL_ENV)
    if not resolved:
        raise ValueError(f"no reward service URL: pass url=... or set {URL_ENV}")
    return resolved


@cache
def sync_client(url: str) -> RewardClient:
    """One per URL per process, so connections are reused across the trainer's calls."""
    client = RewardClient(url, token=os.environ.get(TOKEN_ENV))
    atexit.register(client.close)
    return client


_async_clients: dict[tuple[str, int], AsyncRewardClient] = {}


def async_client(url: str) -> AsyncRewardClient:
    """One per URL per event loop: an async connection pool belongs to the loop that opened it."""
    loop = asyncio.get_running_loop()
    key = (url, id(loop))
    if key not in _async_clients:
        _async_clients[key] = AsyncRewardClient(url, token=os.environ.get(TOKEN_ENV))
    return _async_clients[key]


def tests_of(value: Any) -> list[str]:
    """Tests from a dataset column: a list of asserts, its JSON text, or an object with `tests`/`test_cases`."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith(("[", "{")) else [value]
    if isinstance(value, dict):
        value = value.get("tests", value.get("test_cases", []))
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"cannot read tests from {type(value).__name__}")
    return [str(t) for t in value]


def text_of(message: Any, role: str) -> str:
    """A completion or prompt as plain text: a string as is, a conversation's last `role` turn."""
    if isinstance(message, str):
        return message
    turns = [m for m in message if isinstance(m, dict) and m.get("role") == role]
    return str(turns[-1]["content"]) if turns else ""
