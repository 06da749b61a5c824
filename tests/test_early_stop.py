"""stop_on_first_failure stops the program at the first test the judge fails, not only at one the sandbox sees
fail: the zygote streams finished tests to the judge, which answers with a stop.

Each program sleeps SLEEP_S per test, so a run of all its tests takes at least TESTS * SLEEP_S (a lower bound
no machine can beat), and a stopped one ends a few test lengths in (bounded loosely: the machines are shared).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from acecoder_reward.sandbox_worker import executor as executor_module
from acecoder_reward.sandbox_worker import io_tests
from acecoder_reward.sandbox_worker.pool import SandboxPool
from tests.test_forker import LIMITS, _config

SLEEP_S = 0.4
TESTS = 8
FULL_RUN_S = TESTS * SLEEP_S
LIMITS_IN = {"test_timeout_s": 2.0, "program_timeout_s": 10.0}
STOPPED = ["fail"] + ["not_run"] * (TESTS - 1)

STDIO = f"import time\nn = int(input())\ntime.sleep({SLEEP_S})\nprint(n * 2 if n != 0 else -1)\n"
STDIO_TESTS = {"inputs": [f"{k}\n" for k in range(TESTS)], "outputs": [f"{2 * k}\n" for k in range(TESTS)]}
CALLS = f"import time\ndef double(n):\n    time.sleep({SLEEP_S})\n    return n * 2 if n != 0 else -1\n"
CALL_TESTS = {"inputs": [[k] for k in range(TESTS)], "outputs": [2 * k for k in range(TESTS)], "fn_name": "double"}
ASSERTS = CALLS
ASSERT_TESTS = [f"assert double({k}) == {2 * k}" for k in range(TESTS)]


def _run(client: httpx.Client, response: str, tests: Any, **request: Any) -> dict:
    item = {"response": response, "tests": tests, **request.pop("item", {})}
    answer = client.post("/v1/rewards", json={"items": [item], "limits": LIMITS_IN, "cache": False, **request})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"][0]  # type: ignore[no-any-return]


def _assert_stopped_early(client: httpx.Client, response: str, tests: Any) -> None:
    stopped = _run(client, response, tests, item={"stop_on_first_failure": True})
    assert stopped["tests"]["outcomes"] == STOPPED, stopped
    assert stopped["tests"]["status"] == "ok", stopped  # a stop is the judge's, not a kill: the program ran fine
    assert "earlier test failed" in stopped["tests"]["details"][1]
    assert stopped["tests"]["run_time_s"] < FULL_RUN_S / 2, stopped
    # The same program without the stop runs every test (the wrong one was the first only).
    full = _run(client, response, tests)
    assert full["tests"]["outcomes"] == ["fail"] + ["pass"] * (TESTS - 1), full
    assert full["tests"]["run_time_s"] >= FULL_RUN_S, full


def test_a_wrong_stdout_stops_the_program(client: httpx.Client) -> None:
    _assert_stopped_early(client, STDIO, STDIO_TESTS)


def test_a_wrong_return_value_stops_the_program(client: httpx.Client) -> None:
    _assert_stopped_early(client, CALLS, CALL_TESTS)


def test_a_wrong_assert_value_stops_the_program(client: httpx.Client) -> None:
    """The assert `double(0) == 0` raises nothing in the sandbox: only the judge sees the -1 is wrong."""
    _assert_stopped_early(client, ASSERTS, ASSERT_TESTS)


def test_a_binary_reward_stops_the_program(client: httpx.Client) -> None:
    item = _run(client, STDIO, STDIO_TESTS, tests_reward="binary")
    assert item["tests"]["outcomes"] == STOPPED and item["reward"] == 0.0, item
    assert item["tests"]["run_time_s"] < FULL_RUN_S / 2, item


def test_a_stop_that_arrives_after_the_run_ended_is_skipped() -> None:
    """The judge's stop can cross the run's report (here it is held back until the run is surely over): the
    zygote skips it, and its next jobs run and are judged as usual."""

    async def scenario() -> tuple[float, list[list[str]]]:
        pool = SandboxPool(_config(()))
        await pool.start()
        try:
            executor = executor_module.TestExecutor(pool, [])
            judged = executor_module._any_failed

            async def late(runnable: Any, raw: bytes) -> bool:
                failed = await judged(runnable, raw)
                await asyncio.sleep(2 * FULL_RUN_S)  # the run has ended and its report is in the pipe
                return failed

            executor_module._any_failed = late  # type: ignore[assignment]
            try:
                first = await executor.execute(STDIO, _io_wire(), LIMITS, stop_on_first_failure=True)
            finally:
                executor_module._any_failed = judged
            following = [await executor.execute("print(int(input()) * 2)\n", _io_wire(), LIMITS, stop)
                         for stop in (True, False, True)]
            return first.tests.run_time_s, [first.tests.outcomes, *(r.tests.outcomes for r in following)]
        finally:
            await pool.close()

    run_time_s, (first, *following) = asyncio.run(scenario())
    assert run_time_s >= FULL_RUN_S  # the stop came after the run's end: it was the one to skip
    assert first == STOPPED  # the judge still counts none after the failure
    assert following == [["pass"] * TESTS] * 3


def _io_wire() -> list[dict[str, Any]]:
    return io_tests.from_spec(STDIO_TESTS)
