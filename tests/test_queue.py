"""Queue mode against a real redis-server, real `acecoder-reward worker` processes and the real gateway over
HTTP: same results as local mode, and every fault (SIGKILL, poison job, Redis restart, SIGTERM) ends with
every request answered and every accepted job's result delivered exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from acecoder_reward.sandbox_worker import queue_worker
from acecoder_reward.sandbox_worker.job_queue import Job
from loadtest.gateway_process import REPO, Gateway
from loadtest.humaneval_data import load_problems
from loadtest.queue_processes import SLOW_LIMITS, QueueStack, RedisServer, sleeper
from tests.conftest import metrics


def assert_sleepers_pass(body: dict, count: int) -> None:
    assert body["rewards"] == [1.0] * count, [i["tests"] for i in body["items"]]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.fail("queue tests need redis-server on PATH (Debian: apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def new_stack(server: RedisServer, tmp: Path, **env: str) -> QueueStack:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    return QueueStack(server.url, prefix, tmp / prefix, env)


@contextlib.contextmanager
def started(s: QueueStack, workers: int = 2, concurrency: int = 2) -> Iterator[QueueStack]:
    """A test that fails on these workers shows their logs (at debug: a stop names each drain phase)."""
    try:
        s.start(workers, concurrency)
        yield s
    except BaseException as exc:
        s.stop()
        exc.add_note(s.worker_logs())
        raise
    s.stop()


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueStack]:
    """One gateway and two workers (two programs at once each), shared by the non-destructive tests."""
    with started(new_stack(redis_server, tmp_path_factory.mktemp("queue"), ACECODER_SECRET_TOKEN="s3cret-canary")) as s:
        yield s


@pytest.fixture(scope="module")
def queue_client(stack: QueueStack) -> Iterator[httpx.Client]:
    assert stack.gateway is not None
    with stack.gateway.client() as c:
        yield c


def stats(server: RedisServer, s: QueueStack) -> dict[str, int]:
    raw = server.client().hgetall(f"{s.prefix}:stats")
    return {k.decode(): int(v) for k, v in raw.items()}


def test_humaneval_in_queue_mode_matches_local_mode(queue_client: httpx.Client, client: httpx.Client) -> None:
    problems = load_problems()
    items = [{"response": p.solution, "tests": p.tests} for p in problems]
    items += [{"response": p.prompt + "    return None\n", "tests": p.tests} for p in problems[:20]]
    queued = queue_client.post("/v1/rewards", json={"items": items})
    local = client.post("/v1/rewards", json={"items": items})
    assert queued.status_code == local.status_code == 200, queued.text
    strip = [{"reward": i["reward"], "code": i["code"], "status": i["tests"]["status"],
              "outcomes": i["tests"]["outcomes"], "details": i["tests"]["details"]} for i in queued.json()["items"]]
    want = [{"reward": i["reward"], "code": i["code"], "status": i["tests"]["status"],
             "outcomes": i["tests"]["outcomes"], "details": i["tests"]["details"]} for i in local.json()["items"]]
    assert strip == want
    assert queued.json()["rewards"][:164] == [1.0] * 164


def test_new_test_kinds_in_queue_mode_match_local_mode(queue_client: httpx.Client, client: httpx.Client) -> None:
    """Input/output tests, unittest shapes, the untrusted-tests policy and stop_on_first_failure cross the queue
    (the worker plans and judges) and come back as the embedded pool answers them."""
    double = {"inputs": ["3\n", "5\n", "-2\n"], "outputs": ["6\n", "10\n", "-4\n"]}
    items = [
        {"response": "print(int(input()) * 2)\n", "tests": double},
        {"response": "n = int(input())\nprint(n * 2 if n != 5 else 0)\n", "tests": double, "stop_on_first_failure": True},
        {"response": "def add(a, b):\n    return a + b\n", "tests": {"fn_name": "add", "inputs": [[1, 2]], "outputs": [[3]]}},
        {"response": "def add(a, b):\n    return a + b\n",
         "tests": ["import unittest\nunittest.TestCase().assertEqual(add(1, 2), 3)", "for x in [1]:\n    assert add(x, 0) == x",
                   "import math\nassert math.isclose(add(0.1, 0.2), 0.3)"]},
    ]
    queued = queue_client.post("/v1/rewards", json={"items": items})
    local = client.post("/v1/rewards", json={"items": items})
    assert queued.status_code == local.status_code == 200, queued.text
    keys = ("status", "outcomes", "details", "judged_in_sandbox", "passed", "total")
    assert [{k: i["tests"][k] for k in keys} for i in queued.json()["items"]] == [
        {k: i["tests"][k] for k in keys} for i in local.json()["items"]]
    assert queued.json()["rewards"] == [1.0, 1 / 3, 1.0, 1.0]
    assert queued.json()["items"][1]["tests"]["outcomes"] == ["pass", "fail", "not_run"]
    assert queued.json()["items"][3]["tests"]["judged_in_sandbox"] == [1]


def test_queue_metrics_and_health(queue_client: httpx.Client) -> None:
    url = str(queue_client.base_url).rstrip("/")
    before = metrics(url)
    assert queue_client.post("/v1/rewards", json={"items": [sleeper(1, 0)]}).status_code == 200
    # Gauges are refreshed from Redis every second: wait for the refresh that counts this job, however late.
    deadline = time.monotonic() + 20
    while (after := metrics(url)).get('acecoder_queue_events{kind="done"}', 0) <= before.get(
            'acecoder_queue_events{kind="done"}', 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    health = queue_client.get("/health").json()
    assert health == {"status": "ok", "mode": "queue", "redis": "ok", "workers": 2}
    grew = {name: after.get(name, 0) - before.get(name, 0) for name in (
        'acecoder_queue_events{kind="done"}', "acecoder_queue_wait_seconds_count",
        "acecoder_queue_job_run_seconds_count", "acecoder_queue_added_seconds_count")}
    assert all(delta >= 1 for delta in grew.values()), grew
    assert after["acecoder_queue_live_workers"] == 2 and after["acecoder_redis_up"] == 1
    assert after["acecoder_queue_depth"] == 0 and after["acecoder_queue_pending_jobs"] == 0


def test_redis_password_never_reaches_the_sandbox(queue_client: httpx.Client, redis_server: RedisServer) -> None:
    probe = f"""
import os
def leaked():
    blobs = [repr(dict(os.environ)).encode()]
    for pid in os.listdir('/proc'):
        for name in ('environ', 'cmdline'):
            try:
                blobs.append(open(f'/proc/{{pid}}/{{name}}', 'rb').read())
            except Exception:
                pass
    return [b for b in (b'{redis_server.password}', b's3cret-canary', b'REDIS') if any(b in x for x in blobs)]
"""
    answer = queue_client.post("/v1/rewards", json={"items": [{"response": probe, "tests": ["assert leaked() == []"]}]})
    assert answer.json()["items"][0]["tests"]["outcomes"] == ["pass"], answer.text


def test_worker_health_probe(stack: QueueStack) -> None:
    env = {"ACECODER_REDIS_URL": stack.redis_url, "ACECODER_QUEUE_PREFIX": stack.prefix, "PATH": "/usr/bin:/bin"}
    name = next(iter(stack.workers))
    probe = [sys.executable, "-m", "acecoder_reward.service.cli", "worker-health"]
    alive = subprocess.run([*probe, "--name", name], cwd=REPO, env=env, capture_output=True, text=True)
    assert alive.returncode == 0, alive.stderr
    assert f'"name":"{name}"' in alive.stdout
    assert subprocess.run(probe, cwd=REPO, env=env, capture_output=True).returncode == 0  # any worker on this host
    gone = subprocess.run([*probe, "--name", "no-such-worker"], cwd=REPO, env=env, capture_output=True, text=True)
    assert gone.returncode == 1 and "no live worker" in gone.stderr


def test_queue_full_is_429_with_retry_after(stack: QueueStack, redis_server: RedisServer, tmp_path: Path) -> None:
    small = QueueStack(stack.redis_url, stack.prefix, tmp_path, stack.env)
    gateway = small.start_gateway(ACECODER_QUEUE_MAX_DEPTH="3", ACECODER_MAX_ITEMS_PER_REQUEST="3")
    try:
        small.wait_workers(2)
        thread, out = post_in_background(gateway, {"items": [sleeper(n, 1.0) for n in range(3)],
                                                   "limits": SLOW_LIMITS})
        wait_for(lambda: redis_server.client().xlen(f"{stack.prefix}:jobs") == 3, what="a full queue")
        with gateway.client() as c:
            refused = c.post("/v1/rewards", json={"items": [sleeper(9, 0)]})
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert "at most 3" in refused.json()["error"]["message"]
            thread.join(30)
            assert_sleepers_pass(out["answer"].json(), 3)
            assert c.post("/v1/rewards", json={"items": [sleeper(n, 0) for n in range(3)]}).status_code == 200
    finally:
        small.stop()


def test_request_deadline_withdraws_leftover_jobs(stack: QueueStack, redis_server: RedisServer,
                                                  tmp_path: Path) -> None:
    """4 slots (2 workers x 2), each worker claiming up to 4 ahead; 12 jobs of 1.5 s; a 2 s deadline. The
    answer is a 504 at 2 s; the gateway withdraws the 8 unfinished jobs; the 4 running finish for nobody and
    the 4 still claimed ahead are dropped by their workers (or skipped past their deadline), never run."""
    short = QueueStack(stack.redis_url, stack.prefix, tmp_path, stack.env)
    gateway = short.start_gateway(ACECODER_QUEUE_REQUEST_TIMEOUT_S="2")
    before = stats(redis_server, stack)
    try:
        with gateway.client() as c:
            short.wait_workers(2)
            started = time.monotonic()
            answer = c.post("/v1/rewards", json={"items": [sleeper(n, 1.5) for n in range(12)],
                                                 "limits": SLOW_LIMITS})
            assert answer.status_code == 504 and time.monotonic() - started < 8  # a 2 s deadline, loaded CI
            assert answer.json()["error"]["code"] == "timeout"
            assert answer.json()["error"]["message"].startswith("8 of 12 items did not finish within 2 s")
    finally:
        short.stop()
    # The jobs running at the deadline finish, for nobody: wait for the stream to empty, however slow the
    # machine, then a little longer, so a job wrongly run late would still be counted.
    deadline = time.monotonic() + 30
    while redis_server.client().xlen(f"{stack.prefix}:jobs") and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    after = stats(redis_server, stack)
    counted = {k: after.get(k, 0) - before.get(k, 0) for k in ("done", "withdrawn")}
    assert counted == {"done": 8, "withdrawn": 8}  # the 4 claimed ahead were dropped (or skipped), not run
    assert redis_server.client().xlen(f"{stack.prefix}:jobs") == 0


def test_worker_skips_a_job_past_its_deadline(stack: QueueStack, redis_server: RedisServer) -> None:
    r = redis_server.client()
    before = stats(redis_server, stack)
    now_ms = int(time.time() * 1000)
    job = Job("manual:1", f"{stack.prefix}:reply:manual", now_ms - 1, now_ms - 1000, "def f(): return 1",
              ["assert f() == 1"], dict.fromkeys(("test_timeout_s", "program_timeout_s"), 4) | {
                  "memory_mb": 512, "max_processes": 8, "max_open_files": 64, "max_file_bytes": 1 << 20,
                  "max_output_bytes": 1 << 20, "max_result_bytes": 1 << 20})
    r.xadd(f"{stack.prefix}:jobs", job.encode())
    deadline = time.monotonic() + 10
    while stats(redis_server, stack).get("expired", 0) == before.get("expired", 0):
        assert time.monotonic() < deadline, "the expired job was not skipped"
        time.sleep(0.1)
    assert r.llen(f"{stack.prefix}:reply:manual") == 0  # skipped, not run
    assert r.xlen(f"{stack.prefix}:jobs") == 0


def test_redis_unreachable_is_503_and_health_says_so(tmp_path: Path) -> None:
    dead = QueueStack("redis://:hunter2-canary@127.0.0.1:1/0", "dead", tmp_path, {})
    gateway = dead.start_gateway(wait=False)  # starts anyway, unhealthy: it recovers when Redis comes
    try:
        with gateway.client() as c:
            wait_for(lambda: _answers(c), what="the gateway to listen")
            answer = c.post("/v1/rewards", json={"items": [sleeper(1, 0)]})
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
            message = answer.json()["error"]["message"]
            assert "Redis at redis://127.0.0.1:1/0 is unreachable" in message
            assert "hunter2" not in message and "hunter2" not in gateway.log()
            health = c.get("/health")
            assert health.status_code == 503 and health.json()["redis"] == "unreachable"
    finally:
        dead.stop()


def _answers(c: httpx.Client) -> bool:
    try:
        return c.get("/health").status_code == 503
    except httpx.TransportError:
        return False


def test_no_live_worker_is_503(redis_server: RedisServer, tmp_path: Path) -> None:
    lonely = new_stack(redis_server, tmp_path)
    gateway = lonely.start_gateway()
    try:
        with gateway.client() as c:
            answer = c.post("/v1/rewards", json={"items": [sleeper(1, 0)]})
            assert answer.status_code == 503 and "no sandbox worker is alive" in answer.json()["error"]["message"]
    finally:
        lonely.stop()


# -- faults: each runs its own gateway and workers ---------------------------------------------------------


def post_in_background(gateway: Gateway, body: dict) -> tuple[threading.Thread, dict[str, httpx.Response]]:
    out: dict[str, httpx.Response] = {}

    def run() -> None:
        with gateway.client(timeout=120) as c:
            out["answer"] = c.post("/v1/rewards", json=body)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def holder_of(r: redis.Redis, s: QueueStack, marker: str | None = None, max_delivered: int = 1 << 30,
              min_delivered: int = 0) -> dict[str, int]:
    """Pending jobs per consumer (only those whose job text contains `marker`, if given, and which were
    delivered between `min_delivered` and `max_delivered` times)."""
    held: dict[str, int] = {}
    for entry in r.xpending_range(f"{s.prefix}:jobs", "workers", "-", "+", 1000):
        if not min_delivered <= entry["times_delivered"] <= max_delivered:
            continue
        if marker is not None:
            found = r.xrange(f"{s.prefix}:jobs", entry["message_id"], entry["message_id"])
            if not found or marker.encode() not in found[0][1][b"j"]:
                continue
        name = entry["consumer"].decode()
        held[name] = held.get(name, 0) + 1
    return held


def wait_for(condition, timeout_s: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def busy_first_worker(s: QueueStack, r: redis.Redis, count: int, seconds: float
                      ) -> tuple[str, threading.Thread, dict[str, httpx.Response]]:
    """Posts `count` sleepers in the background and returns once the first worker holds some of them."""
    assert s.gateway is not None
    first = next(iter(s.workers))
    thread, out = post_in_background(s.gateway, {"items": [sleeper(n, seconds) for n in range(count)],
                                                 "limits": SLOW_LIMITS})
    wait_for(lambda: holder_of(r, s).get(first), what="the first worker to hold jobs")
    return first, thread, out


def test_sigkilled_worker_jobs_are_reclaimed(redis_server: RedisServer, tmp_path: Path) -> None:
    with started(new_stack(redis_server, tmp_path)) as s:
        r = redis_server.client()
        first, thread, out = busy_first_worker(s, r, 8, 1.0)
        s.kill_worker(first)
        thread.join(60)
        assert out["answer"].status_code == 200, out["answer"].text
        assert_sleepers_pass(out["answer"].json(), 8)
        assert stats(redis_server, s)["reclaimed"] >= 1
        assert r.xlen(f"{s.prefix}:jobs") == 0


def test_poison_job_is_dead_lettered_and_the_batch_finishes(redis_server: RedisServer, tmp_path: Path) -> None:
    """Every worker that takes the poison job dies (killed here, as a worker-crashing job would); after
    ACECODER_QUEUE_MAX_DELIVERIES deliveries it is dead-lettered as infra_error and the rest pass."""
    with started(new_stack(redis_server, tmp_path, ACECODER_QUEUE_MAX_DELIVERIES="2")) as s:
        gateway = s.gateway
        assert gateway is not None
        r = redis_server.client()
        poison = {"response": "import time\ndef f():\n    time.sleep(30)  # POISON\n", "tests": ["assert f() == 1"]}
        items = [sleeper(n, 0.2) for n in range(6)]
        items.insert(3, poison)
        thread, out = post_in_background(gateway, {"items": items, "limits": {"test_timeout_s": 30,
                                                                              "program_timeout_s": 40}})
        kills = 0
        while thread.is_alive() and kills < 5:
            # Kill at each new delivery (a worker that only reserves the job to run it alone does not run
            # it yet); a third delivery is dead-lettered at once, so that worker is left alone.
            for name in holder_of(r, s, marker="POISON", max_delivered=2, min_delivered=kills + 1):
                if s.workers[name].poll() is None:
                    s.kill_worker(name)
                    s.workers[name].wait()
                    kills += 1
                    s.start_worker()
            time.sleep(0.05)
        thread.join(60)
        assert kills == 2
        body = out["answer"].json()
        assert body["items"][3]["tests"]["status"] == "infra_error"
        assert body["items"][3]["tests"]["outcomes"] == ["not_run"]
        assert "dead-lettered" in body["items"][3]["tests"]["details"][0]
        assert body["rewards"][:3] + body["rewards"][4:] == [1.0] * 6
        dead = r.xrange(f"{s.prefix}:dead")
        assert len(dead) == 1 and b"POISON" in dead[0][1][b"j"]
        assert stats(redis_server, s)["dead_lettered"] == 1


def test_redis_restart_mid_load_loses_no_accepted_job(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        with started(QueueStack(server.url, "restart", tmp_path / "stack", {"ACECODER_LOG_LEVEL": "info"}),
                     concurrency=1) as s:
            gateway = s.gateway
            assert gateway is not None
            thread, out = post_in_background(gateway, {"items": [sleeper(n, 0.5) for n in range(12)],
                                                       "limits": SLOW_LIMITS})
            # Each worker holds three jobs (one running, two claimed ahead); the other 6 wait in the stream.
            wait_for(lambda: sum(holder_of(server.client(), s).values()) == 6, what="both workers busy")
            server.stop()
            with gateway.client(timeout=10) as c:
                down = c.post("/v1/rewards", json={"items": [sleeper(1, 0)]})
                assert down.status_code == 503 and "unreachable" in down.json()["error"]["message"]
                time.sleep(1.5)
                assert c.get("/health").status_code == 503
                server.start()  # same port, empty: the stream, its group and the reply list are gone
                thread.join(60)
                assert out["answer"].status_code == 200, out["answer"].text
                assert_sleepers_pass(out["answer"].json(), 12)
                wait_for(lambda: c.get("/health").status_code == 200, what="the gateway to see Redis again")
                s.wait_workers(2)
                after = c.post("/v1/rewards", json={"items": [sleeper(n, 0) for n in range(4)]})
                assert after.status_code == 200, after.text
                assert_sleepers_pass(after.json(), 4)
            assert "vanished from Redis (it restarted); queueing them again" in gateway.log()
    finally:
        server.stop()


@pytest.mark.parametrize("drain_s", ["10", "0.3"], ids=["finishes", "hands-back"])
def test_sigterm_of_a_busy_worker(redis_server: RedisServer, tmp_path: Path, drain_s: str) -> None:
    """With time to drain, the worker finishes its jobs; without, it hands them back at once. Either way
    it exits 0 within its grace period and every result comes back once."""
    with started(new_stack(redis_server, tmp_path, ACECODER_WORKER_DRAIN_S=drain_s)) as s:
        r = redis_server.client()
        first, thread, out = busy_first_worker(s, r, 6, 1.5)
        stop = s.terminate_worker(first, float(drain_s) + 10)
        took = stop.seconds
        why = f"stopped in {took:.2f} s, exit {stop.returncode}; its log:\n{s.worker_log(first)}"
        assert stop.returncode == 0, why
        thread.join(60)
        assert out["answer"].status_code == 200, out["answer"].text
        assert_sleepers_pass(out["answer"].json(), 6)
        counted = stats(redis_server, s)
        finished = int(re.search(r"stopped after (\d+) jobs", s.worker_log(first)).group(1))  # type: ignore[union-attr]
        # It ran two jobs at once and had up to two more claimed ahead: those are handed back, never run.
        if drain_s == "10":
            assert finished >= 2 and counted.get("handed_back", 0) <= 2 and took < 5, why
        else:  # the running ones are cut off and handed back too
            assert finished == 0 and counted["handed_back"] >= 2 and took < 4, why
        assert counted.get("dead_lettered", 0) == 0 and counted["done"] == 6


def test_stopping_a_task_outlasts_lost_cancels() -> None:
    """On Python 3.11 a cancel that lands while redis-py writes a command is lost (asyncio.wait_for, CPython
    gh-86296): a stopping worker cancels what it cuts off until it ends, and never waits on it unbounded."""

    async def loses_two_cancels() -> None:
        for _ in range(3):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)

    released = asyncio.Event()

    async def never_ends() -> None:  # until the test lets it go
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)

    async def stop_both() -> tuple[bool, bool, float]:
        lossy, stuck = asyncio.create_task(loses_two_cancels()), asyncio.create_task(never_ends())
        await asyncio.sleep(0)
        started = time.monotonic()
        await queue_worker._end([lossy, stuck], 0, "test tasks")
        took = time.monotonic() - started
        ended = lossy.done(), stuck.done()
        released.set()
        stuck.cancel()
        await asyncio.gather(stuck)
        return (*ended, took)

    lossy_ended, stuck_ended, took = asyncio.run(stop_both())
    assert lossy_ended and not stuck_ended
    assert queue_worker.CANCEL_WAIT_S <= took < queue_worker.CANCEL_WAIT_S + 2


def test_load_steady_then_overload_then_recovery(redis_server: RedisServer, tmp_path: Path) -> None:
    from loadtest.queue_load import LoadPlan, run_load

    with started(new_stack(redis_server, tmp_path, ACECODER_QUEUE_MAX_DEPTH="200",
                           ACECODER_MAX_ITEMS_PER_REQUEST="64")) as s:
        gateway = s.gateway
        assert gateway is not None
        assert gateway.proc is not None
        report = run_load(gateway.url, [gateway.proc.pid, *(p.pid for p in s.workers.values())],
                          LoadPlan(steady_clients=3, steady_s=5, burst_clients=24, burst_items=40, burst_s=3,
                                   recovery_s=3))
        print(report.summary())
        assert report.steady.errors == 0 and report.steady.ok > 20
        assert report.burst.status_counts.get(429, 0) > 0
        assert set(report.burst.status_counts) <= {200, 429}
        assert report.recovery.errors == 0 and report.recovery.ok > 10
        assert report.rss_growth_mb() < 25 and report.rss_creep_mb() < 6, report.summary()


def test_two_gateways_share_the_workers(stack: QueueStack, tmp_path: Path) -> None:
    other = QueueStack(stack.redis_url, stack.prefix, tmp_path, stack.env)
    gateway = other.start_gateway()
    try:
        other.wait_workers(2)
        with ThreadPoolExecutor(2) as pool, gateway.client() as c:
            assert stack.gateway is not None
            with stack.gateway.client() as c2:
                a = pool.submit(c.post, "/v1/rewards", json={"items": [sleeper(n, 0.05) for n in range(10)]})
                b = pool.submit(c2.post, "/v1/rewards", json={"items": [sleeper(n, 0.05) for n in range(10, 20)]})
                assert_sleepers_pass(a.result().json(), 10)
                assert_sleepers_pass(b.result().json(), 10)
    finally:
        other.stop()
