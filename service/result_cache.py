"""The test-result cache: a program meeting tests it has already met is answered without running again.

An RL group samples one prompt 8-16 times, and once the code is extracted many samples are the same
program; the next epoch, or an evaluation rerun, sends them again. Keys:
- the entry: the program (what extraction reads of the response: its fenced Python blocks, or the whole
  text; never the prose around them) and the context (limits, and the run profile of the processes that run
  it: code version, isolation, allowed modules, sandbox settings);
- in it, one field per test, keyed by that test and every test before it (the tests share the run's process,
  so a test's outcome may depend on those before it), and one per test list and stop_on_first_failure,
  holding the run's status and code.
Items identical in all of that are also coalesced while in flight: the repeats within one large request (verl)
or across concurrent one-item requests (OpenRLHF) wait for the one run instead of each starting their own, and
each gets its result as soon as that item is done.

What is stored: pass, fail and error outcomes of runs that ended normally (status ok; for no_code,
syntax_error, runtime_error and exited, every outcome) and that nothing ended from outside. Timeouts, memory
kills, output floods, crashes and infrastructure errors depend on the run, so they are never stored, and
neither is any other test of such a run, nor a test the judge decides on a clock (unittest's regex checks). An
item is answered from the cache only when its list's status and all of its tests are there (or, with
stop_on_first_failure, every test up to the first that did not pass): never half fresh, half cached.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from acecoder_reward.sandbox_worker import judge
from acecoder_reward.sandbox_worker.assertions import judged_on_a_clock
from acecoder_reward.sandbox_worker.executor import ItemResult, Limits
from acecoder_reward.sandbox_worker.extract import extraction_input
from acecoder_reward.sandbox_worker.job_queue import connect
from acecoder_reward.service.cache_stores import CacheStore, MemoryStore, RedisStore
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.settings import Settings

if TYPE_CHECKING:
    from acecoder_reward.service.rewards import Executor

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when what an entry means changes: old entries then simply stop matching
# Programs that never reached a test, or ended themselves: every test's outcome, not_run included, is theirs.
PROGRAM_FAILED = frozenset({"no_code", "syntax_error", "runtime_error", "exited"})
CACHEABLE_STATUSES = PROGRAM_FAILED | {"ok"}
CACHEABLE_OUTCOMES = frozenset({judge.PASS, judge.FAIL, judge.ERROR})
UNSHARED_S = 60.0  # after a run that could not be shared (a timeout, a kill), identical items run without waiting
UNSHARED_MAX = 10_000


@dataclass(frozen=True)
class ItemKey:
    entry: str  # the program under its context: the store's key
    fields: tuple[bytes, ...]  # the entry's fields: the run's status and code, then one per test
    whole: bytes  # the item as a whole, stop_on_first_failure included: what in-flight coalescing matches
    clocked: frozenset[int] = frozenset()  # tests the judge decides on a clock: never stored


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))  # length-prefixed: no two part lists hash alike
        h.update(part)
    return h.digest()


def _text(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates; they must hash, not raise


def _test_bytes(test: Any) -> bytes:
    if isinstance(test, str):
        return b"a" + _text(test)
    try:
        data = orjson.dumps(test, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # lone surrogates or huge ints in an I/O case: orjson refuses them
        data = b"null"
    if b"null" not in data:
        return b"o" + data
    # orjson writes NaN and the infinities as null, as it writes None: the json module keeps them apart.
    return b"j" + json.dumps(test, sort_keys=True).encode()


@functools.lru_cache(maxsize=256)
def context_of(limits: Limits, profile: str) -> bytes:
    """Everything besides the program and its tests that a run's outcome depends on: the request's limits and
    the profile of the processes that run it (`run_profile`: code, isolation, modules, sandbox settings)."""
    return orjson.dumps({"format": CACHE_FORMAT, "limits": limits.__dict__, "profile": profile},
                        option=orjson.OPT_SORT_KEYS)


@functools.lru_cache(maxsize=65536)
def _assert_digest(test: str) -> bytes:
    """A problem's tests come with each of its N samples: hash each once."""
    return _digest(_test_bytes(test))


@dataclass(frozen=True)
class ListKey:
    """What an item's key takes from its test list alone (and stop_on_first_failure)."""

    digests: tuple[bytes, ...]  # one per test
    fields: tuple[bytes, ...]  # the run's status and code, then one per test, keyed by the tests up to it
    clocked: frozenset[int]  # tests the judge decides on a clock: never stored


LIST_MEMO_CHARS = 32_768  # at most 1,024 lists of this many characters are held: 32 M characters


def list_key(tests: Sequence[Any], stop: bool) -> ListKey:
    """The list's key parts, computed once per list of asserts (a problem's list comes with each of its N
    samples, and hashing it is most of an item's key) up to LIST_MEMO_CHARS long, so the memo stays small
    whatever clients send; longer lists and I/O tests (dicts) are hashed each time."""
    if all(isinstance(t, str) for t in tests) and sum(len(t) for t in tests) <= LIST_MEMO_CHARS:
        return _assert_list_key(tuple(tests), stop)
    return _list_key(tests, stop)


@functools.lru_cache(maxsize=1024)
def _assert_list_key(tests: tuple[str, ...], stop: bool) -> ListKey:
    return _list_key(tests, stop)


def _list_key(tests: Sequence[Any], stop: bool) -> ListKey:
    digests = tuple(_assert_digest(t) if isinstance(t, str) else _digest(_test_bytes(t)) for t in tests)
    # Test i's outcome may depend on every test before it (they share the run's process): its field is keyed
    # by the whole prefix. The run's status and code depend on the whole list and on the stop.
    chain, prefixes = b"", []
    for digest in digests:
        chain = _digest(chain, digest)
        prefixes.append(b"t" + chain)
    status = b"s" + _digest(chain, b"stop" if stop else b"all")
    clocked = frozenset(i for i, t in enumerate(tests) if isinstance(t, str) and judged_on_a_clock(t))
    return ListKey(digests, (status, *prefixes), clocked)


def item_key(response: str, tests: Sequence[Any], context: bytes, stop: bool) -> ItemKey:
    program = extraction_input(response)
    key = list_key(tests, stop)
    parts = [context, *(_text(p) for p in program)]
    if len(program) > 2:  # several fenced blocks: the names the tests call choose one, so the tests belong in
        parts.extend(key.digests)
    entry = _digest(*parts).hex()
    return ItemKey(entry, key.fields, _digest(entry.encode(), key.fields[0]), key.clocked)


def _copy(data: bytes) -> bytes:
    """orjson's bytes keep a ~4 KB allocation each: what the in-process store keeps is copied to size."""
    return memoryview(data).tobytes()


def entry_fields(key: ItemKey, result: ItemResult, stop: bool) -> dict[bytes, bytes] | None:
    """What a run leaves in the cache: None when its outcome depended on the run. With stop_on_first_failure
    the tests after the first failure are the stop's, not the program's: they are left out, as are the tests
    the judge decides on a clock (`ItemKey.clocked`)."""
    t = result.tests
    if t.status not in CACHEABLE_STATUSES or t.kills:
        return None
    count = len(t.outcomes)
    if stop:
        count = next((i + 1 for i, o in enumerate(t.outcomes) if o != judge.PASS), count)
    in_sandbox = set(t.judged_in_sandbox)
    every = t.status in PROGRAM_FAILED
    fields = {key.fields[i + 1]: _copy(orjson.dumps([t.outcomes[i], t.details[i], i in in_sandbox]))
              for i in range(count) if (every or t.outcomes[i] in CACHEABLE_OUTCOMES) and i not in key.clocked}
    if not fields:
        return None
    fields[key.fields[0]] = _copy(orjson.dumps([result.code, t.status]))
    return fields


def from_fields(values: Sequence[bytes | None], stop: bool) -> ItemResult | None:
    """The item's answer from its cached fields (status first, then one per test), or None on a miss."""
    if values[0] is None:
        return None
    code, status = orjson.loads(values[0])
    outcomes: list[str] = []
    details: list[str | None] = []
    in_sandbox: list[int] = []
    for i, value in enumerate(values[1:]):
        if value is None:
            return None
        outcome, detail, judged_inside = orjson.loads(value)
        outcomes.append(outcome)
        details.append(detail)
        if judged_inside:
            in_sandbox.append(i)
        if stop and outcome != judge.PASS:  # the rest would not run: they need no cached outcome
            rest = len(values) - 2 - i
            outcomes += [judge.NOT_RUN] * rest
            details += [None] * rest
            judge.stop_after_first_failure(outcomes, details)
            break
    return ItemResult(code, judge.TestsResult(status, outcomes, details, in_sandbox), cached=True)


class ResultCache:
    """Runs items through an executor, answering repeats from `store` and from identical items in flight."""

    def __init__(self, store: CacheStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._in_flight: dict[bytes, asyncio.Future[ItemResult | None]] = {}
        self._unshared: dict[bytes, float] = {}  # items whose last run could not be shared, until when
        counts = metrics.test_cache
        self._hits, self._misses = counts.labels("hit"), counts.labels("miss")
        self._coalesced = counts.labels("coalesced")

    async def close(self) -> None:
        await self.store.close()

    async def execute_many(self, executor: Executor, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                           stops: Sequence[bool]) -> list[ItemResult]:
        profile = executor.profile
        if profile is None:  # the workers disagree on how programs run (a rolling upgrade): no cache meanwhile
            self.metrics.test_cache.labels("bypass").inc(len(items))
            return await executor.execute_many(items, limits, stops)
        context = context_of(limits, profile)
        keys = [item_key(response, tests, context, stop) for (response, tests), stop in zip(items, stops, strict=True)]
        results: list[ItemResult | None] = [None] * len(items)
        leading: dict[bytes, asyncio.Future[ItemResult | None]] = {}
        leaders: list[int] = []
        following: list[tuple[int, asyncio.Future[ItemResult | None]]] = []
        alone: list[int] = []
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Claimed before the first await, so no other request can start the same item meanwhile.
        for i, key in enumerate(keys):
            if self._unshared.get(key.whole, 0.0) > now:  # its last run could not be shared: run it now
                alone.append(i)
                continue
            future = self._in_flight.get(key.whole) or leading.get(key.whole)
            if future is not None:
                following.append((i, future))
                continue
            leading[key.whole] = self._in_flight[key.whole] = loop.create_future()
            leaders.append(i)
        try:
            await self._lead(executor, items, limits, stops, keys, leaders, results, profile)
        finally:
            for whole, future in leading.items():
                self._in_flight.pop(whole, None)
                if not future.done():  # the run failed or was cancelled: followers run on their own
                    future.set_result(None)
        alone += await self._follow(following, results)
        if alone:  # not shared with items in flight, but a stored result still answers them
            misses = await self._answer(keys, stops, alone, results)
            if misses:
                await self._run(executor, items, limits, stops, keys, misses, results, profile)
        if any(r is None for r in results):
            raise RuntimeError("the test-result cache lost an item's result")
        return results  # type: ignore[return-value]  # no None left, checked above

    async def _lead(self, executor: Executor, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                    stops: Sequence[bool], keys: list[ItemKey], leaders: list[int],
                    results: list[ItemResult | None], profile: str) -> None:
        misses = await self._answer(keys, stops, leaders, results)
        for i in leaders:
            future = self._in_flight[keys[i].whole]
            if results[i] is not None and not future.done():  # an identical item's run may have answered it
                future.set_result(results[i])
        if misses:
            await self._run(executor, items, limits, stops, keys, misses, results, profile)

    async def _answer(self, keys: list[ItemKey], stops: Sequence[bool], which: list[int],
                      results: list[ItemResult | None]) -> list[int]:
        """Answers from the store what it holds; returns the items it does not (they must run)."""
        found = await self._lookup([keys[i] for i in which])
        misses: list[int] = []
        for i, values in zip(which, found, strict=True):
            hit = self._decoded(values, stops[i])
            if hit is None:
                misses.append(i)
            else:
                results[i] = hit
        self._hits.inc(len(which) - len(misses))
        self._misses.inc(len(misses))
        return misses

    async def _run(self, executor: Executor, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                   stops: Sequence[bool], keys: list[ItemKey], which: list[int],
                   results: list[ItemResult | None], profile: str) -> None:
        """Runs items and stores what may be stored (`profile`: the run profile the keys hold). Each item's
        waiting followers get its result as soon as it is known, not when the whole batch is."""
        stored: list[tuple[str, dict[bytes, bytes]]] = []

        def finished(k: int, result: ItemResult) -> None:
            i = which[k]
            key = keys[i]
            # A queue worker that ran it the way this key says (a worker that joined with another profile runs
            # jobs until the next poll of the workers' profiles sees it).
            keyed = result.profile is None or result.profile == profile
            fields = entry_fields(key, result, stops[i]) if keyed else None
            if fields is not None:
                stored.append((key.entry, fields))
            else:  # identical items arriving soon run at once rather than wait for a run they cannot share
                self._unshared[key.whole] = asyncio.get_running_loop().time() + UNSHARED_S
            future = self._in_flight.get(key.whole)
            if future is not None and not future.done():
                shared = ItemResult(result.code, replace(result.tests, run_time_s=0.0), cached=True)
                future.set_result(shared if fields is not None else None)

        ran = await executor.execute_many([items[i] for i in which], limits, [stops[i] for i in which], finished)
        for i, result in zip(which, ran, strict=True):
            results[i] = result
        self._prune_unshared()
        self.metrics.test_cache_stored.inc(len(stored))
        await self._store(stored)

    async def _follow(self, following: list[tuple[int, asyncio.Future[ItemResult | None]]],
                      results: list[ItemResult | None]) -> list[int]:
        """Items identical to one in flight take its result; returns those whose result may not be reused (it
        depended on its run, or the run failed): they run on their own."""
        alone: list[int] = []
        for i, future in following:
            result = await asyncio.shield(future)
            if result is None:
                alone.append(i)
            else:
                results[i] = result
        if following:
            self._coalesced.inc(len(following) - len(alone))
        return alone

    def _decoded(self, values: list[bytes | None] | None, stop: bool) -> ItemResult | None:
        if values is None:
            return None
        try:
            return from_fields(values, stop)
        except Exception as exc:  # a damaged entry is a miss, never a 500
            self._failed("decode", exc)
            return None

    def _prune_unshared(self) -> None:
        if len(self._unshared) > UNSHARED_MAX:
            now = asyncio.get_running_loop().time()
            self._unshared = {k: t for k, t in self._unshared.items() if t > now}

    async def _lookup(self, keys: list[ItemKey]) -> list[list[bytes | None] | None]:
        """None for every key when the store fails: the items then simply run."""
        if not keys:
            return []
        try:
            return list(await self.store.get_many([(k.entry, k.fields) for k in keys]))
        except Exception as exc:  # a cache that fails must cost speed, never a request
            self._failed("lookup", exc)
            return [None] * len(keys)

    async def _store(self, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
        if not entries:
            return
        try:
            await self.store.put_many(entries)
        except Exception as exc:
            self._failed("store", exc)
        self.metrics.test_cache_bytes.set(self.store.used_bytes)

    def _failed(self, what: str, exc: Exception) -> None:
        self.metrics.test_cache_errors.labels(what).inc()
        log.warning("test-result cache %s failed (%s: %s); running without it", what, type(exc).__name__, exc)


@asynccontextmanager
async def open_cache(settings: Settings, metrics: Metrics) -> AsyncIterator[ResultCache | None]:
    """The cache the settings ask for: None when off, Redis in queue mode, else in this process."""
    if not settings.test_cache:
        yield None
        return
    max_bytes = settings.test_cache_max_mb * 1024 * 1024
    store: CacheStore
    if settings.redis_url is not None:
        redis = connect(settings.redis_url.get_secret_value(), "acecoder-gateway-cache")
        store = RedisStore(redis, settings.queue_prefix, max_bytes, settings.test_cache_ttl_s)
    else:
        store = MemoryStore(max_bytes)
    cache = ResultCache(store, metrics)
    try:
        yield cache
    finally:
        await cache.close()
