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


ITEM_FIELDS = ("fn_name", "compare", "test_imports")  # what may travel with the tests


def read_tests(value: Any) -> dict[str, Any] | None:
    """An item's test fields (`tests`, and `fn_name`, `compare`, `test_imports` where given) from a dataset
    column, a label or verl's `ground_truth`; None when it holds no tests. It reads a list of asserts (one plain
    string is one assert), an input/output object ({"inputs", "outputs", "fn_name"?}: APPS/TACO `input_output`,
    verl's `ground_truth`; CodeContests' {"input", "output"}), LiveCodeBench's list of {"input", "output",
    "testtype"}, the JSON text of any of these, or an object with `tests` (or `test_cases`) and those fields."""
    if hasattr(value, "tolist"):  # numpy arrays: how verl and `datasets` hand over list columns
        value = value.tolist()
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith(("[", "{")) else [value] if text else None
    if value is None:
        return None
    if isinstance(value, dict) and ("tests" in value or "test_cases" in value):
        fields = read_tests(value["tests"] if "tests" in value else value["test_cases"])
        if fields is not None:
            fields.update({k: value[k] for k in ITEM_FIELDS if value.get(k) is not None})
        return fields
    if isinstance(value, dict):
        inputs = value.get("inputs", value.get("input"))
        return {"tests": value} if value and inputs != [] else None
    if isinstance(value, (list, tuple)) and (all(isinstance(t, str) for t in value)
                                             or all(isinstance(t, dict) for t in value)):
        return {"tests": list(value)} if value else None
    raise ValueError(f"cannot read tests from {type(value).__name__}: expected asserts, an input/output object, "
                     "or a list of LiveCodeBench tests")


def text_of(message: Any, role: str) -> str:
    """A completion or prompt as plain text: a string as is, a conversation's last `role` turn."""
    if isinstance(message, str):
        return message
    turns = [m for m in message if isinstance(m, dict) and m.get("role") == role]
    return str(turns[-1]["content"]) if turns else ""
