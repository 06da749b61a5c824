"""The test-result cache: repeats are answered without a run, with exactly the first run's outcomes; what
depends on the run (timeouts, kills) is never reused; the stores keep their bounds. Against the session's
embedded gateway, a queue-mode cluster of gateways sharing one Redis, and the stores on their own."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from acecoder_reward.sandbox_worker.executor import Limits
from acecoder_reward.service.cache_stores import MemoryStore, RedisStore
from acecoder_reward.service.result_cache import ItemKey, context_of, item_key
from loadtest.gateway_process import Gateway, start_gateway, stop_gateway
from loadtest.queue_processes import QueueStack
from tests.conftest import free_port, metrics, wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMITS = Limits(test_timeout_s=6, program_timeout_s=15, memory_mb=4096, max_processes=8, max_open_files=64,
                max_file_bytes=1 << 24, max_output_bytes=1 << 23, max_result_bytes=1 << 24)
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"]


def fresh_add(body: str = "return a + b") -> str:
    """A program no earlier run of this session has met (its comment is unique)."""
    return f"# {uuid.uuid4().hex}\ndef add(a, b):\n    {body}\n"


def post(client: httpx.Client, items: list[dict], **extra: object) -> dict:
    answer = client.post("/v1/rewards", json={"items": items, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()


def cache_counts(url: str) -> dict[str, float]:
    m = metrics(url)
    return {r: m.get(f'acecoder_test_cache_items_total{{result="{r}"}}', 0.0)
            for r in ("hit", "miss", "coalesced", "bypass")}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def same_answer(a: dict, b: dict) -> None:
    """Everything but the cache flag and the run time is the first run's."""
    assert a["reward"] == b["reward"] and a["code"] == b["code"]
    for field in ("status", "outcomes", "details", "judged_in_sandbox", "passed", "total"):
        assert a["tests"][field] == b["tests"][field], field


# -- keys -------------------------------------------------------------------------------------------------

def test_key_is_the_program_not_the_prose() -> None:
    ctx = context_of(LIMITS, "profile")
    code = "def f():\n    return 1\n"
    a = item_key(f"Here is my answer:\n```python\n{code}```\nIt returns 1.", ["assert f() == 1"], ctx, False)
    b = item_key(f"<think>easy</think>Sure!\n```python\n{code}```", ["assert f() == 1"], ctx, False)
    assert a == b
    other_tests = item_key(f"```python\n{code}```", ["assert f() == 2"], ctx, False)
    assert other_tests.entry == a.entry and other_tests.fields != a.fields  # same entry, other fields
    assert item_key(f"```python\n{code}```", ["assert f() == 1"], ctx, True).whole != a.whole
    slower = context_of(Limits(**{**LIMITS.__dict__, "test_timeout_s": 1}), "profile")
    assert item_key(f"```python\n{code}```", ["assert f() == 1"], slower, False).entry != a.entry
    assert item_key(f"```python\n{code}```", ["assert f() == 1"], context_of(LIMITS, "other"), False).entry \
        != a.entry
    # With several blocks the tests' names choose the program: the tests are then part of the entry.
    two = "```python\ndef f():\n    return 1\n```\n```python\ndef g():\n    return 2\n```"
    assert item_key(two, ["assert f() == 1"], ctx, False).entry != item_key(two, ["assert g() == 2"], ctx, False).entry
    # Lone surrogates (valid JSON escapes) hash instead of raising, in responses and in I/O cases.
    item_key("print('\ud800')", [{"kind": "stdio", "input": "\udc00", "output": "", "compare": "exact"}], ctx, False)


def test_the_run_profile_names_what_decides_a_run() -> None:
    from acecoder_reward.sandbox_worker.run_profile import run_profile

    base = ("namespaces", [], LIMITS, 64, ["/root"], ["math"])
    variants = [("none", [], LIMITS, 64, ["/root"], ["math"]), ("namespaces", ["numpy"], LIMITS, 64, ["/root"], ["math"]),
                ("namespaces", [], Limits(**{**LIMITS.__dict__, "memory_mb": 1}), 64, ["/root"], ["math"]),
                ("namespaces", [], LIMITS, 32, ["/root"], ["math"]), ("namespaces", [], LIMITS, 64, [], ["math"]),
                ("namespaces", [], LIMITS, 64, ["/root"], [])]
    profiles = {run_profile(*v) for v in [base, *variants]}
    assert len(profiles) == 1 + len(variants)
    assert run_profile(*base) == run_profile("namespaces", [], LIMITS, 64, ["/root"], ["math"])


def test_memory_store_is_bounded_and_keeps_first_values() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_bytes=4000)
        await store.put_many([("a", {b"code": b"x", b"t1": b"pass"})])
        await store.put_many([("a", {b"t1": b"fail", b"t2": b"pass"})])
        assert await store.get_many([("a", [b"code", b"t1", b"t2", b"t3"])]) == [[b"x", b"pass", b"pass", None]]
        for n in range(40):  # ~400 bytes each: the oldest go, the recently read one stays
            await store.get_many([("a", [b"code"])])
            await store.put_many([(f"e{n}", {b"code": b"y" * 100})])
        assert store.used_bytes <= 4000
        assert (await store.get_many([("a", [b"code"])]))[0] == [b"x"]
        assert (await store.get_many([("e0", [b"code"])]))[0] == [None]
    asyncio.run(scenario())


def test_redis_store_bound_ttl_and_first_write_wins() -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    sync = redis.Redis.from_url(REDIS_URL)

    async def scenario() -> None:
        store = RedisStore(aioredis.Redis.from_url(REDIS_URL), prefix, max_bytes=20_000, ttl_s=60)
        try:
            await store.put_many([("a", {b"code": b"x", b"t1": b"pass"})])
            await store.put_many([("a", {b"t1": b"fail", b"t2": b"pass"})])
            assert await store.get_many([("a", [b"code", b"t1", b"t2", b"t3"]), ("zz", [b"code"])]) == [
                [b"x", b"pass", b"pass", None], [None]]
            for n in range(100):
                await store.put_many([(f"e{n}", {b"code": b"y" * 1000})])
            assert store.used_bytes <= 20_000
            assert int(sync.get(f"{prefix}:cache:bytes") or 0) == store.used_bytes
            assert len(sync.keys(f"{prefix}:cache:e*")) < 20
            assert (await store.get_many([("e0", [b"code"])]))[0] == [None]  # evicted
            assert (await store.get_many([("e99", [b"code"])]))[0] == [b"y" * 1000]
        finally:
            await store.close()
        short = RedisStore(aioredis.Redis.from_url(REDIS_URL), prefix + "s", max_bytes=1 << 20, ttl_s=0.2)
        try:
            await short.put_many([("b", {b"code": b"x"})])
            assert (await short.get_many([("b", [b"code"])]))[0] == [b"x"]
            one = short.used_bytes
            await asyncio.sleep(0.4)
            assert (await short.get_many([("b", [b"code"])]))[0] == [None]
            for _ in range(3):  # written again after expiring: counted once, not once per write
                await short.put_many([("b", {b"code": b"x"})])
                await asyncio.sleep(0.3)
            await short.put_many([("c", {b"code": b"z"})])  # prunes b's bookkeeping
            assert sync.zrange(f"{prefix}s:cache:lru", 0, -1) == [f"{prefix}s:cache:c".encode()]
            assert short.used_bytes == one  # c alone, of b's size
        finally:
            await short.close()
    try:
        asyncio.run(scenario())
    finally:
        for key in sync.scan_iter(f"{prefix}*"):
            sync.delete(key)


def test_a_full_redis_refuses_the_cache_rather_than_grow(tmp_path: Path) -> None:
    """Over maxmemory (noeviction, as a queue's Redis should run), the cache's scripts are refused like any
    write, so the cache cannot crowd out the job queue; the cache then misses."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--maxmemory", "3mb", "--maxmemory-policy", "noeviction",
                               "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        sync = redis.Redis.from_url(url)
        wait_for(lambda: _answers(sync), "redis-server")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for n in range(10_000):
                sync.set(f"fill{n}", b"x" * 2000)

        async def scenario() -> None:
            store = RedisStore(aioredis.Redis.from_url(url), "full", max_bytes=1 << 30, ttl_s=60)
            try:
                for n in range(10):
                    with pytest.raises(redis.exceptions.OutOfMemoryError):
                        await store.put_many([(f"big{n}", {b"s": b"y" * 200_000})])
            finally:
                await store.close()
        used = sync.info("memory")["used_memory"]
        asyncio.run(scenario())
        assert sync.info("memory")["used_memory"] <= used + 500_000  # 2 MB were offered; buffers aside, none kept
    finally:
        server.terminate()
        server.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


# -- the embedded gateway ---------------------------------------------------------------------------------

def test_a_repeat_is_answered_from_the_cache(client: httpx.Client, gateway: Gateway) -> None:
    program = fresh_add("return a + b if a >= 0 else b")  # passes 3 of 4
    before = cache_counts(gateway.url)
    first = post(client, [{"response": f"```python\n{program}```", "tests": ADD_TESTS}])["items"][0]
    again = post(client, [{"response": f"Another sample, the same code:\n```python\n{program}```",
                           "tests": ADD_TESTS}])["items"][0]
    assert not first["cached"] and again["cached"]
    assert first["tests"]["outcomes"] == ["pass", "pass", "fail", "pass"]
    same_answer(first, again)
    assert delta(before, cache_counts(gateway.url)) == {"hit": 1, "miss": 1, "coalesced": 0, "bypass": 0}
    # cache=false runs it, and so does another limit.
    assert not post(client, [{"response": program, "tests": ADD_TESTS}], cache=False)["items"][0]["cached"]
    assert not post(client, [{"response": program, "tests": ADD_TESTS}],
                    limits={"test_timeout_s": 5})["items"][0]["cached"]


def test_repeats_in_one_request_run_once(client: httpx.Client, gateway: Gateway) -> None:
    right, wrong = fresh_add(), fresh_add("return a - b")
    items = [{"response": p, "tests": ADD_TESTS} for p in (right, wrong, right, right, wrong, right, right, wrong)]
    before = cache_counts(gateway.url)
    body = post(client, items)
    assert body["rewards"] == [1.0, 0.25, 1.0, 1.0, 0.25, 1.0, 1.0, 0.25]
    assert [i["cached"] for i in body["items"]] == [False, False] + [True] * 6
    assert delta(before, cache_counts(gateway.url)) == {"hit": 0, "miss": 2, "coalesced": 6, "bypass": 0}
    uncached = post(client, items, cache=False)
    assert uncached["rewards"] == body["rewards"] and not any(i["cached"] for i in uncached["items"])


def test_concurrent_one_item_requests_share_one_run(gateway: Gateway) -> None:
    """OpenRLHF sends one sample per request, many in flight: identical ones wait for one run."""
    program = fresh_add("import time; time.sleep(0.5); return a + b")
    query = f"<|im_start|>user\nadd<|im_end|>\n<|im_start|>assistant\n```python\n{program}```"
    before = cache_counts(gateway.url)

    def one(_: int) -> httpx.Response:
        return httpx.post(gateway.url + "/get_reward", json={"query": [query], "labels": [
            '["assert add(1, 2) == 3"]']}, timeout=60)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert all(a.status_code == 200 and a.json()["rewards"] == [1.0] for a in answers)
    counts = delta(before, cache_counts(gateway.url))
    assert counts["miss"] == 1 and counts["hit"] + counts["coalesced"] == 7, counts


def test_outcomes_that_depend_on_the_run_are_never_reused(client: httpx.Client) -> None:
    slow = fresh_add("while True: pass")
    for _ in range(2):
        item = post(client, [{"response": slow, "tests": ADD_TESTS[:1]}], limits={"test_timeout_s": 0.5})["items"][0]
        assert item["tests"]["outcomes"] == ["timeout"] and not item["cached"]
    hog = fresh_add("x = bytearray(1 << 34); return a + b")
    for _ in range(2):
        item = post(client, [{"response": hog, "tests": ADD_TESTS[:1]}], limits={"memory_mb": 256})["items"][0]
        assert item["reward"] == 0.0 and not item["cached"], item["tests"]


def test_deterministic_failures_are_reused(client: httpx.Client) -> None:
    for response in (f"# {uuid.uuid4().hex}\ndef add(a, b):\n    return (", f"# {uuid.uuid4().hex}\nraise SystemExit(3)",
                     f"# {uuid.uuid4().hex}\nimport nonexistent_module_{uuid.uuid4().hex}"):
        first = post(client, [{"response": response, "tests": ADD_TESTS[:2]}])["items"][0]
        again = post(client, [{"response": response, "tests": ADD_TESTS[:2]}])["items"][0]
        assert first["reward"] == 0.0
        same_answer(first, again)
        assert again["cached"], first["tests"]


def test_stop_on_first_failure_reuses_the_prefix(client: httpx.Client) -> None:
    program = fresh_add("return a + b if a != 2 else 0")  # fails the second test only
    stop = {"response": program, "tests": ADD_TESTS, "stop_on_first_failure": True}
    first = post(client, [stop])["items"][0]
    assert first["tests"]["outcomes"] == ["pass", "fail", "not_run", "not_run"] and not first["cached"]
    assert post(client, [stop])["items"][0]["cached"]
    # Without the stop the last two tests are needed: not stored, so the item runs, and then they are.
    full = post(client, [{"response": program, "tests": ADD_TESTS}])["items"][0]
    assert full["tests"]["outcomes"] == ["pass", "fail", "pass", "pass"] and not full["cached"]
    again = post(client, [{"response": program, "tests": ADD_TESTS}])["items"][0]
    same_answer(full, again)
    assert again["cached"]


def test_io_tests_key_on_the_expected_output_and_compare_mode(client: httpx.Client) -> None:
    program = f"# {uuid.uuid4().hex}\nprint(sum(map(int, input().split())))"
    tests = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}
    first = post(client, [{"response": program, "tests": tests}])["items"][0]
    assert first["reward"] == 1.0 and not first["cached"]
    assert post(client, [{"response": program, "tests": tests}])["items"][0]["cached"]
    wrong = post(client, [{"response": program, "tests": {"inputs": tests["inputs"], "outputs": ["3\n", "8\n"]}}])
    assert wrong["rewards"] == [0.5] and not wrong["items"][0]["cached"]
    assert not post(client, [{"response": program, "tests": tests, "compare": "exact"}])["items"][0]["cached"]


def test_a_cached_answer_is_the_first_run_of_a_nondeterministic_program(client: httpx.Client) -> None:
    """As documented: the cache replays the run it recorded; cache=false asks for a new one."""
    program = f"# {uuid.uuid4().hex}\nimport random\ndef coin():\n    return random.random() < 0.5\n"
    tests = [f"assert coin() is True  # {k}" for k in range(12)]
    first = post(client, [{"response": program, "tests": tests}])["items"][0]
    for _ in range(3):
        same_answer(first, post(client, [{"response": program, "tests": tests}])["items"][0])


def test_a_tests_outcome_is_reused_only_after_the_same_tests(client: httpx.Client) -> None:
    """Tests share the run's process: test B after A is not test B alone, nor B before A."""
    program = f"# {uuid.uuid4().hex}\ncalls = []\ndef f():\n    calls.append(1)\n    return len(calls)\n"
    first, second = "assert f() == 1", "assert f() == 2"
    assert post(client, [{"response": program, "tests": [first, second]}])["rewards"] == [1.0]
    for tests, reward in (([second], 0.0), ([second, first], 0.0), ([first], 1.0)):
        item = post(client, [{"response": program, "tests": tests}])["items"][0]
        assert item["reward"] == reward, (tests, item)
    prefix = post(client, [{"response": program, "tests": [first]}])["items"][0]
    assert prefix["cached"]  # the same list again: stored


def test_a_run_without_runnable_tests_says_nothing_of_other_tests(client: httpx.Client) -> None:
    program = f"# {uuid.uuid4().hex}\ndef add(a, b):\n    return a + b\nraise ValueError('at load')\n"
    assert post(client, [{"response": program, "tests": ["assert ((("]}])["items"][0]["code"] is None
    for _ in range(2):
        item = post(client, [{"response": program, "tests": ["assert add(1, 2) == 3"]}])["items"][0]
        assert item["tests"]["status"] == "runtime_error" and item["code"] is not None, item
    stdin = f"# {uuid.uuid4().hex}\nn = int(input())\nprint(n + 1)\n"
    assert post(client, [{"response": stdin, "tests": ["assert n == 1"]}])["items"][0]["tests"]["status"] \
        == "runtime_error"  # loaded as a module: input() meets an empty stdin
    for _ in range(2):
        item = post(client, [{"response": stdin, "tests": {"inputs": ["1\n"], "outputs": ["2\n"]}}])["items"][0]
        assert item["reward"] == 1.0 and item["tests"]["status"] == "ok", item


def test_nan_infinity_and_null_are_different_tests(client: httpx.Client) -> None:
    program = f"# {uuid.uuid4().hex}\ndef g(x):\n    return x is None\n"
    for value, reward in (("null", 1.0), ("NaN", 0.0), ("Infinity", 0.0), ("-Infinity", 0.0)):
        tests = f'{{"inputs": [[{value}]], "outputs": [true], "fn_name": "g"}}'
        item = post(client, [{"response": program, "tests": tests}])["items"][0]
        assert item["reward"] == reward and not item["cached"], (value, item)


def test_a_verdict_reached_on_the_judges_clock_is_not_stored(client: httpx.Client) -> None:
    """assertNotRegex runs the test's pattern over the candidate's text under a time limit: its verdict may
    differ between runs, so it is never replayed."""
    program = f"# {uuid.uuid4().hex}\ndef f():\n    return 'a' * 30 + 'b'\n"
    test = "unittest.TestCase().assertNotRegex(f(), r'^(a|aa)+$')"
    for _ in range(2):
        item = post(client, [{"response": program, "tests": [test], "test_imports": ["import unittest"]}])
        assert not item["items"][0]["cached"], item


def test_a_follower_gets_its_result_when_its_item_is_done_not_its_batch(gateway: Gateway) -> None:
    quick = fresh_add()
    slow = fresh_add("import time; time.sleep(3); return a + b")
    items = [{"response": slow, "tests": ADD_TESTS[:1]}, {"response": quick, "tests": ADD_TESTS[:1]}]
    with ThreadPoolExecutor(2) as pool:
        batch = pool.submit(httpx.post, gateway.url + "/v1/rewards", json={"items": items}, timeout=60)
        time.sleep(0.5)  # the batch has claimed both items
        started = time.monotonic()
        alone = httpx.post(gateway.url + "/v1/rewards", json={"items": items[1:]}, timeout=60)
        waited = time.monotonic() - started
        assert alone.json()["items"][0]["cached"] and waited < 2.0, waited  # not the slow item's 3 s
        assert batch.result().json()["rewards"] == [1.0, 1.0]


def test_the_memory_store_counts_what_it_holds() -> None:
    """What the in-process store accounts is within 1.5x of the memory its entries take."""
    import tracemalloc

    from acecoder_reward.sandbox_worker import judge
    from acecoder_reward.sandbox_worker.executor import ItemResult
    from acecoder_reward.service.result_cache import entry_fields

    async def fill(store: MemoryStore, keys: list[ItemKey]) -> None:
        for key in keys:  # made beforehand: only what the store keeps is measured
            result = ItemResult("code", judge.TestsResult("ok", ["pass"] * 100, [None] * 100))
            fields = entry_fields(key, result, False)
            assert fields is not None  # the store's own field names, as once the request's keys are gone
            await store.put_many([(key.entry, {bytes(bytearray(name)): value for name, value in fields.items()})])
    keys = [item_key(f"def f(x): return x  # {n}", [f"assert f({k}) == {k}  # {n}" for k in range(100)],
                     context_of(LIMITS, "profile"), False) for n in range(300)]
    store = MemoryStore(max_bytes=1 << 30)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    asyncio.run(fill(store, keys))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert store.used_bytes <= held * 1.5 and held <= store.used_bytes * 1.5, (store.used_bytes, held)


def test_fence_scanning_is_linear_on_hostile_text() -> None:
    """The gateway scans each response for fences on its event loop: a fence line that never ends (200k
    characters) must not take seconds (the quadratic pattern took ~30 s)."""
    from acecoder_reward.sandbox_worker.extract import extract_code, extraction_input

    started = time.monotonic()
    assert extraction_input("```" + "a" * 200_000) == ("text", "```" + "a" * 200_000)
    assert time.monotonic() - started < 1.0
    assert extract_code("Sure:\n```Python3 extra words\nx = 1\n```\nDone.") == "x = 1\n"


# -- queue mode: one cache for the cluster ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QueueStack, Gateway, Gateway]]:
    """One worker and three gateways on one prefix: two with the cache, one with ACECODER_TEST_CACHE=false."""
    work: Path = tmp_path_factory.mktemp("cache-cluster")
    stack = QueueStack(REDIS_URL, f"t{uuid.uuid4().hex[:8]}", work, {})
    stack.start(workers=1, concurrency=2)
    other = start_gateway(work, stack.base_env())
    off = start_gateway(work, {**stack.base_env(), "ACECODER_TEST_CACHE": "false"})
    try:
        yield stack, other, off
    finally:
        stop_gateway(off)
        stop_gateway(other)
        stack.stop()
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{stack.prefix}:*"):
            r.delete(key)


def test_a_repeat_anywhere_in_the_cluster_is_not_run_again(cluster: tuple[QueueStack, Gateway, Gateway]) -> None:
    stack, other, off = cluster
    assert stack.gateway is not None
    program = fresh_add("return a + b if b else -1")  # fails the last test
    item = {"response": program, "tests": ADD_TESTS}
    runs = metrics(stack.gateway.url).get("acecoder_queue_jobs_enqueued_total", 0.0)
    with stack.gateway.client() as first_gw, other.client() as second_gw, off.client() as off_gw:
        first = post(first_gw, [item])["items"][0]
        repeat = post(second_gw, [item, item])["items"]
        uncached = post(off_gw, [item])["items"][0]
    assert not first["cached"] and all(i["cached"] for i in repeat) and not uncached["cached"]
    for answer in (*repeat, uncached):
        same_answer(first, answer)
    assert metrics(stack.gateway.url)["acecoder_queue_jobs_enqueued_total"] - runs == 1
    assert metrics(other.url).get("acecoder_queue_jobs_enqueued_total", 0.0) == 0.0
    r = redis.Redis.from_url(REDIS_URL)
    entries = [k for k in r.scan_iter(f"{stack.prefix}:cache:*") if len(k.rpartition(b":")[2]) == 32]
    assert entries and all(0 < r.ttl(k) <= 86_400 for k in entries)
    assert int(r.get(f"{stack.prefix}:cache:bytes") or 0) > 0
    for entry in entries:  # damaged entries are misses: the item runs, the request is answered
        for name in r.hkeys(entry):
            r.hset(entry, name, b"\xff not json")
    with other.client() as second_gw:
        damaged = post(second_gw, [item])["items"][0]
    assert not damaged["cached"]
    same_answer(first, damaged)
    assert metrics(other.url).get('acecoder_test_cache_errors_total{operation="decode"}', 0) >= 1


def test_workers_that_run_programs_differently_turn_the_cache_off(
        cluster: tuple[QueueStack, Gateway, Gateway]) -> None:
    """A worker configured apart (here: numpy allowed), as in a rolling upgrade: while it is live the cluster's
    workers disagree on how programs run, so no answer comes from the cache and nothing is stored."""
    stack, other, _ = cluster
    item = {"response": fresh_add(), "tests": ADD_TESTS}
    with other.client() as gw:
        post(gw, [item])
        assert post(gw, [item])["items"][0]["cached"]
        odd = stack.start_worker(concurrency=1, ACECODER_SANDBOX_ALLOWED_MODULES='["numpy"]')
        try:
            wait_for(lambda: httpx.get(other.url + "/health", timeout=5).json()["workers"] == 2, "the second worker")
            time.sleep(1.5)  # a poll of the workers' profiles (each second) after both are live
            before = cache_counts(other.url)
            mixed = post(gw, [item, {"response": fresh_add(), "tests": ADD_TESTS}])
            assert not any(i["cached"] for i in mixed["items"])
            assert delta(before, cache_counts(other.url))["bypass"] == 2
        finally:
            stack.kill_worker(odd)
        wait_for(lambda: httpx.get(other.url + "/health", timeout=5).json()["workers"] == 1, "the odd worker gone")
        wait_for(lambda: post(gw, [item])["items"][0]["cached"], "the cache back")
    assert stack.gateway is not None
    with stack.gateway.client() as first_gw:  # every gateway polls on its own: the next test needs this one back
        wait_for(lambda: post(first_gw, [item])["items"][0]["cached"], "the cache back on the first gateway")


def test_a_cache_that_fails_costs_speed_not_requests(cluster: tuple[QueueStack, Gateway, Gateway]) -> None:
    """The cache's Redis calls failing (here: its scripts refused by a full Redis) still answers every item."""
    stack, _, _ = cluster
    assert stack.gateway is not None
    r = redis.Redis.from_url(REDIS_URL)
    bytes_key = f"{stack.prefix}:cache:bytes"
    r.set(bytes_key, "not a number")  # the store script's arithmetic now fails
    try:
        program = fresh_add()
        with stack.gateway.client() as c:
            body = post(c, [{"response": program, "tests": ADD_TESTS}])
        assert body["rewards"] == [1.0]
        assert metrics(stack.gateway.url).get('acecoder_test_cache_errors_total{operation="store"}', 0) >= 1
    finally:
        r.delete(bytes_key)


def test_the_data_commands_in_process_use_the_cache_unless_told_not_to() -> None:
    from acecoder_reward.service.data import callers
    from acecoder_reward.service.settings import Settings

    body = {"items": [{"response": fresh_add(), "tests": ADD_TESTS}] * 2}

    async def scenario() -> None:
        async with callers.in_process(Settings(pool_size=1)) as call:
            first, again = await call(body), await call(body)
        assert [i["cached"] for i in first["items"]] == [False, True]
        assert [i["cached"] for i in again["items"]] == [True, True]
        async with callers.in_process(Settings(pool_size=1), cache=False) as call:
            assert [i["cached"] for i in (await call(body))["items"]] == [False, False]
    asyncio.run(scenario())


def test_a_result_run_under_another_profile_is_not_stored() -> None:
    """A worker that joined with another run profile runs jobs until its gateways' next poll of the workers'
    profiles: its results carry its profile, and the cache keeps only those run as the key says. The executor
    here stands in for the queue at its seam (`rewards.Executor`), answering as such a worker would."""
    from acecoder_reward.sandbox_worker import judge
    from acecoder_reward.sandbox_worker.executor import ItemResult
    from acecoder_reward.sandbox_worker.job_queue import decode_result, encode_result
    from acecoder_reward.service.metrics import Metrics
    from acecoder_reward.service.result_cache import ResultCache

    class Workers:
        profile = "the gateway's"

        def __init__(self) -> None:
            self.ran = 0
            self.worker_profile = "another"

        async def execute_many(self, items, limits, stops, on_result=None):  # type: ignore[no-untyped-def]
            results = []
            for k, (_, tests) in enumerate(items):
                self.ran += 1
                sent = ItemResult("code", judge.TestsResult("ok", ["pass"] * len(tests), [None] * len(tests)))
                # Through the queue's own wire format, as a worker's result reaches the gateway.
                result = decode_result(encode_result("job", sent, 0.0, 0.0, "w", self.worker_profile)).item
                if on_result is not None:
                    on_result(k, result)
                results.append(result)
            return results

    async def scenario() -> list[int]:
        workers, cache = Workers(), ResultCache(MemoryStore(max_bytes=1 << 20), Metrics())
        items = [(fresh_add(), ADD_TESTS)]
        runs = []
        for profile in ("another", "the gateway's", "the gateway's"):
            workers.worker_profile = profile
            before = workers.ran
            await cache.execute_many(workers, items, LIMITS, [False])  # type: ignore[arg-type]
            runs.append(workers.ran - before)
        return runs

    # Run under another profile: not stored, so the next one runs too; that one is stored and answers the third.
    assert asyncio.run(scenario()) == [1, 1, 0]
