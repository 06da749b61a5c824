"""What a request cannot exceed, and what happens when its client leaves, on the embedded gateway: its own 429
past ACECODER_MAX_PENDING_ITEMS, the server's caps on a request's limits, and a client that disconnects
while its program runs (the run is killed, its slot replaced, the next request served)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, metrics, post_and_hold, score, start_gateway, stop_gateway, wait_for

MAX_PENDING = 3
LIMITED_ENV = {"ACECODER_MAX_PENDING_ITEMS": str(MAX_PENDING), "ACECODER_POOL_SIZE": str(MAX_PENDING),
               "ACECODER_MAX_TEST_TIMEOUT_S": "1", "ACECODER_MAX_PROGRAM_TIMEOUT_S": "3",
               "ACECODER_MAX_MEMORY_MB": "256"}
HONEST = {"response": "def inc(x):\n    return x + 1\n", "tests": ["assert inc(1) == 2"]}
PENDING = "acecoder_pending_items"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-limited"), LIMITED_ENV)
    yield gw
    stop_gateway(gw)


def _assert_overloaded(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == "overloaded" and f"more than {MAX_PENDING} items pending" in error["message"], error


def _programs(reading: dict[str, float]) -> float:
    return sum(v for k, v in reading.items() if k.startswith("acecoder_programs_total{"))


# --- admission -------------------------------------------------------------------------------------------------


def test_a_request_over_the_pending_limit_is_429_before_any_work(limited: Gateway) -> None:
    refused = 'acecoder_rejected_total{reason="overloaded"}'
    before = metrics(limited.url)
    answer = httpx.post(limited.url + "/v1/rewards", json={"items": [HONEST] * (MAX_PENDING + 1)}, timeout=30)
    _assert_overloaded(answer)
    after = metrics(limited.url)
    assert after[refused] - before.get(refused, 0) == 1
    assert _programs(after) == _programs(before)  # nothing ran
    assert after[PENDING] == 0
    assert httpx.post(limited.url + "/v1/rewards", json={"items": [HONEST] * MAX_PENDING},
                      timeout=30).json()["rewards"] == [1.0] * MAX_PENDING


def test_requests_in_flight_hold_their_items_until_they_finish(limited: Gateway) -> None:
    """One request holds every pending place while its programs run: the next one is refused, not queued;
    once it is answered, its places are free again."""
    slow = {"response": "import time\ntime.sleep(2)\ndef f():\n    return 1\n", "tests": ["assert f() == 1"]}
    answers: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: answers.append(httpx.post(
        limited.url + "/v1/rewards", json={"items": [slow] * MAX_PENDING}, timeout=60)))
    holder.start()
    try:
        wait_for(lambda: metrics(limited.url)[PENDING] == MAX_PENDING, "request holding every place")
        _assert_overloaded(httpx.post(limited.url + "/v1/rewards", json={"items": [HONEST]}, timeout=30))
    finally:
        holder.join(60)
    assert answers[0].status_code == 200, answers[0].text
    assert metrics(limited.url)[PENDING] == 0
    assert httpx.post(limited.url + "/v1/rewards", json={"items": [HONEST]}, timeout=30).json()["rewards"] == [1.0]


# --- caps on a request's limits ---------------------------------------------------------------------------------


def test_a_request_cannot_raise_its_limits_past_the_servers_caps(limited: Gateway) -> None:
    """Each program passes under the limits the request asks for (the defaults' caps are 30 s, 60 s and
    8192 MB); this server caps them at 1 s per test, 3 s per program and 256 MB, so each one fails on its cap."""
    slow_test = {"response": "import time\ndef f():\n    time.sleep(3)\n    return 1\n", "tests": ["assert f() == 1"]}
    slow_load = {"response": "import time\ntime.sleep(6)\ndef f():\n    return 1\n", "tests": ["assert f() == 1"]}
    big = {"response": "def f():\n    return len(bytearray(512 * 2**20))\n", "tests": ["assert f() == 512 * 2**20"]}
    answer = httpx.post(limited.url + "/v1/rewards", timeout=60, json={
        "items": [slow_test, slow_load, big],
        "limits": {"test_timeout_s": 30, "program_timeout_s": 60, "memory_mb": 8192}})
    assert answer.status_code == 200, answer.text
    test_cap, program_cap, memory_cap = (i["tests"] for i in answer.json()["items"])
    assert (test_cap["outcomes"], test_cap["details"]) == (["timeout"], ["test exceeded 1.0 s"]), test_cap
    assert (program_cap["outcomes"], program_cap["details"]) == (["timeout"], ["program exceeded 3.0 s"]), program_cap
    assert memory_cap["outcomes"] == ["error"] and "MemoryError" in memory_cap["details"][0], memory_cap


# --- a client that leaves mid-run -------------------------------------------------------------------------------


def _zygotes(gateway: Gateway) -> set[int]:
    assert gateway.proc is not None
    children = Path(f"/proc/{gateway.proc.pid}/task/{gateway.proc.pid}/children").read_text().split()
    return {int(pid) for pid in children if "acecoder_reward.sandbox_worker.zygote" in _read(f"/proc/{pid}/cmdline")}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:  # the process exited meanwhile
        return ""


def _processes_named(name: str) -> list[int]:
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _read(f"/proc/{pid}/comm").strip() == name]


def test_a_client_that_leaves_mid_run_has_its_run_killed_and_the_slot_replaced(gateway: Gateway,
                                                                               client: httpx.Client) -> None:
    marker = f"ace{uuid.uuid4().hex[:12]}"  # the run names itself (comm), so the host can find it
    sleeper = (f"import ctypes, time\nctypes.CDLL(None).prctl(15, {marker.encode()!r}, 0, 0, 0)\ntime.sleep(30)\n"
               "def f():\n    return 1\n")
    gone = 'acecoder_requests_total{code="499",route="/v1/rewards"}'
    zygotes, before = _zygotes(gateway), metrics(gateway.url)
    connection = post_and_hold(gateway.url, {"items": [{"response": sleeper, "tests": ["assert f() == 1"]}],
                                         "limits": {"program_timeout_s": 60}})
    try:
        wait_for(lambda: len(_processes_named(marker)) == 1, "run of the sleeping program")
    finally:
        connection.close()
    wait_for(lambda: not _processes_named(marker), "end of the abandoned run", timeout_s=10)
    wait_for(lambda: len(_zygotes(gateway)) == len(zygotes)
             and client.get("/health").json()["zygotes"] == len(zygotes), "replacement zygote")
    assert len(_zygotes(gateway) - zygotes) == 1  # its zygote was replaced, the others kept
    started = time.monotonic()
    assert score(client, HONEST["response"], HONEST["tests"])["reward"] == 1.0
    assert time.monotonic() - started < 10  # served now, not after the 30 s run
    assert metrics(gateway.url)[gone] == before.get(gone, 0) + 1
