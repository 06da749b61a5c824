"""Queue mode, a client that goes away while its jobs wait: the gateway withdraws them from the stream, so no
worker runs them for nobody, and the next request is served at once. Against a private redis-server, one real
worker and the real gateway."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from acecoder_reward.sandbox_worker.queue_keys import QueueKeys
from loadtest.queue_processes import SLOW_LIMITS, QueueStack, RedisServer, private_queue_stack, sleeper
from tests.conftest import metrics, post_and_hold, wait_for

JOBS = 4
JOB_S = 5.0  # far longer than the client stays: none finishes before it leaves


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueStack]:
    """One worker running one program at a time (it claims two more ahead), so most jobs wait in the stream."""
    if not RedisServer.available():
        pytest.fail("queue tests need redis-server on PATH (Debian: apt-get install redis-server)")
    with private_queue_stack(tmp_path_factory.mktemp("queue-disconnect"), f"t{uuid.uuid4().hex[:8]}",
                             workers=1, concurrency=1) as s:
        yield s


def test_a_client_that_leaves_has_its_queued_jobs_withdrawn(stack: QueueStack) -> None:
    assert stack.gateway is not None
    keys, r = QueueKeys(stack.prefix), redis.Redis.from_url(stack.redis_url, socket_timeout=5)
    worker = next(iter(stack.workers))

    def counter(name: str) -> int:
        return int(r.hget(keys.stats, name) or 0)

    def worker_idle() -> bool:
        record = json.loads(r.get(keys.worker(worker)) or "{}")
        return record.get("running") == 0 and record.get("claimed") == 0

    gone = 'acecoder_requests_total{code="499",route="/v1/rewards"}'
    before = {name: counter(name) for name in ("withdrawn", "done")}
    gone_before = metrics(stack.gateway.url).get(gone, 0)
    connection = post_and_hold(stack.gateway.url, {"items": [sleeper(n, JOB_S) for n in range(JOBS)],
                                               "limits": SLOW_LIMITS})
    try:
        wait_for(lambda: r.xlen(keys.jobs) == JOBS and not worker_idle(), "jobs queued and one running")
    finally:
        connection.close()
    wait_for(lambda: r.xlen(keys.jobs) == 0, "withdrawal of the jobs", timeout_s=10)
    assert counter("withdrawn") - before["withdrawn"] == JOBS  # none had finished when the client left
    # The worker finishes the job it was running (for nobody) and drops the ones it had claimed ahead.
    wait_for(lambda: worker_idle(), "idle worker", timeout_s=3 * JOB_S)
    assert counter("done") - before["done"] <= 1, "withdrawn jobs were run"
    assert metrics(stack.gateway.url)[gone] == gone_before + 1
    answer = httpx.post(stack.gateway.url + "/v1/rewards", json={"items": [sleeper(7, 0)]}, timeout=10)
    assert answer.status_code == 200 and answer.json()["rewards"] == [1.0], answer.text

