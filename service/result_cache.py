"""The test-result cache: a program meeting tests it has already met is answered without running again.

An RL group samples one prompt 8-16 times, and once the code is extracted many samples are the same
program; the next epoch, or an evaluation rerun, sends them again. Keys:
- the entry: the program (what extraction reads of the response: its fenced Python blocks, or the whole
  text; never the prose around them) and the context (limits, allowed modules, test format, judge version);
- one field per test: the test source, or the whole I/O case with its expected output and compare mode.
Items identical in all of that and in `stop_on_first_failure` are also coalesced while in flight: the
repeats within one large request (verl) or across concurrent one-item requests (OpenRLHF) wait for the one
run instead of each starting their own.

What is stored: pass, fail and error outcomes of runs that ended normally (status ok, no_code,
syntax_error, runtime_error, exited) and that nothing ended from outside. Timeouts, memory kills, output
floods, crashes and infrastructure errors depend on the run, so they are never stored, and neither is any
other test of such a run. An item is answered from the cache only when all of its tests are there (or,
with stop_on_first_failure, every test up to the first that did not pass): it never mixes fresh and cached
outcomes, since tests run in order in one process and may share its state.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from acecoder_reward import sandbox_worker
from acecoder_reward.sandbox_worker import judge
from acecoder_reward.sandbox_worker.executor import ItemResult, Limits
from acecoder_reward.sandbox_worker.extract import extraction_input
from acecoder_reward.sandbox_worker.job_queue import connect
from acecoder_reward.service.cache_stores import CODE_FIELD, CacheStore, MemoryStore, RedisStore
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


def _judge_version() -> str:
    """The package version and a digest of the sandbox's source (runner, judge, comparisons): any change to
    how programs run or are judged starts a fresh cache, a rolling upgrade's included."""
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(Path(sandbox_worker.__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return f"{metadata.version('acecoder-reward')}+{h.hexdigest()}"


JUDGE_VERSION = _judge_version()


@dataclass(frozen=True)
class ItemKey:
    entry: str  # the program under its context: the store's key
    tests: tuple[bytes, ...]  # one digest per test: the entry's fields
    whole: bytes  # the item as a whole, stop_on_first_failure included: what in-flight coalescing matches


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
        return b"d" + orjson.dumps(test, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # lone surrogates in an I/O case: orjson refuses them, json escapes them
        return b"d" + json.dumps(test, sort_keys=True).encode()


def context_of(limits: Limits, allowed_modules: Sequence[str]) -> bytes:
    """Everything besides the program and its tests that a run's outcome depends on."""
    return _context(limits, tuple(sorted(allowed_modules)))


@functools.lru_cache(maxsize=256)
def _context(limits: Limits, modules: tuple[str, ...]) -> bytes:
    return orjson.dumps({"format": CACHE_FORMAT, "judge": JUDGE_VERSION, "limits": limits.__dict__,
                         "modules": modules}, option=orjson.OPT_SORT_KEYS)


@functools.lru_cache(maxsize=65536)
def _assert_digest(test: str) -> bytes:
    """A problem's tests come with each of its N samples: hash each once."""
    return _digest(_test_bytes(test))


def item_key(response: str, tests: Sequence[Any], context: bytes, stop: bool) -> ItemKey:
    program = extraction_input(response)
    digests = tuple(_assert_digest(t) if isinstance(t, str) else _digest(_test_bytes(t)) for t in tests)
    parts = [context, *(_text(p) for p in program)]
    if len(program) > 2:  # several fenced blocks: the names the tests call choose one, so the tests belong in
        parts.append(b"".join(digests))
    entry = _digest(*parts).hex()
    return ItemKey(entry, digests, _digest(entry.encode(), *digests, b"stop" if stop else b"all"))


def entry_fields(key: ItemKey, result: ItemResult, stop: bool) -> dict[bytes, bytes] | None:
    """What a run leaves in the cache: None when its outcome depended on the run. With stop_on_first_failure
    the tests after the first failure are the stop's, not the program's: they are left out."""
    t = result.tests
    if t.status not in CACHEABLE_STATUSES or t.kills:
        return None
    count = len(t.outcomes)
    if stop:
        count = next((i + 1 for i, o in enumerate(t.outcomes) if o != judge.PASS), count)
    in_sandbox = set(t.judged_in_sandbox)
    every = t.status in PROGRAM_FAILED
    fields = {key.tests[i]: orjson.dumps([t.outcomes[i], t.details[i], i in in_sandbox])
              for i in range(count) if every or t.outcomes[i] in CACHEABLE_OUTCOMES}
    if not fields:
        return None
    fields[CODE_FIELD] = orjson.dumps([result.code, t.status])
    return fields


def from_fields(values: Sequence[bytes | None], stop: bool) -> ItemResult | None:
    """The item's answer from its cached fields (code first, then one per test), or None on a miss."""
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

    def __init__(self, store: CacheStore, metrics: Metrics, allowed_modules: Sequence[str]) -> None:
        self.store = store
        self.metrics = metrics
        self.allowed_modules = list(allowed_modules)
        self._in_flight: dict[bytes, asyncio.Future[ItemResult | None]] = {}
        counts = metrics.test_cache
        self._hits, self._misses = counts.labels("hit"), counts.labels("miss")
        self._coalesced = counts.labels("coalesced")

    async def close(self) -> None:
        await self.store.close()

    async def execute_many(self, executor: Executor, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                           stops: Sequence[bool]) -> list[ItemResult]:
        context = context_of(limits, self.allowed_modules)
        keys = [item_key(response, tests, context, stop) for (response, tests), stop in zip(items, stops, strict=True)]
        results: list[ItemResult | None] = [None] * len(items)
        leading: dict[bytes, asyncio.Future[ItemResult | None]] = {}
        leaders: list[int] = []
        following: list[tuple[int, asyncio.Future[ItemResult | None]]] = []
        loop = asyncio.get_running_loop()
        # Claimed before the first await, so no other request can start the same item meanwhile.
        for i, key in enumerate(keys):
            future = self._in_flight.get(key.whole) or leading.get(key.whole)
            if future is not None:
                following.append((i, future))
                continue
            leading[key.whole] = self._in_flight[key.whole] = loop.create_future()
            leaders.append(i)
        try:
            await self._lead(executor, items, limits, stops, keys, leaders, results)
        finally:
            for whole, future in leading.items():
                self._in_flight.pop(whole, None)
                if not future.done():  # the run failed or was cancelled: followers run on their own
                    future.set_result(None)
        await self._follow(executor, items, limits, stops, following, results)
        return [r for r in results if r is not None]

    async def _lead(self, executor: Executor, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                    stops: Sequence[bool], keys: list[ItemKey], leaders: list[int],
                    results: list[ItemResult | None]) -> None:
        found = await self._lookup([keys[i] for i in leaders])
        misses: list[int] = []
        for i, values in zip(leaders, found, strict=True):
            hit = from_fields(values, stops[i]) if values is not None else None
            if hit is None:
                misses.append(i)
            else:
                results[i] = hit
                self._in_flight[keys[i].whole].set_result(hit)
        self._hits.inc(len(leaders) - len(misses))
        self._misses.inc(len(misses))
        if not misses:
            return
        ran = await executor.execute_many([items[i] for i in misses], limits, [stops[i] for i in misses])
        stored: list[tuple[str, dict[bytes, bytes]]] = []
        for i, result in zip(misses, ran, strict=True):
            results[i] = result
            fields = entry_fields(keys[i], result, stops[i])
            if fields is not None:
                stored.append((keys[i].entry, fields))
            self._in_flight[keys[i].whole].set_result(ItemResult(result.code, result.tests, cached=True)
                                                      if fields is not None else None)
        self.metrics.test_cache_stored.inc(len(stored))
        await self._store(stored)

    async def _follow(self, executor: Executor, items: Sequence[tuple[str, list[Any]]], limits: Limits,
                      stops: Sequence[bool], following: list[tuple[int, asyncio.Future[ItemResult | None]]],
                      results: list[ItemResult | None]) -> None:
        """Items identical to one in flight take its result; where that result may not be reused (it
        depended on its run, or the run failed), they run on their own."""
        alone: list[int] = []
        for i, future in following:
            result = await asyncio.shield(future)
            if result is None:
                alone.append(i)
            else:
                results[i] = result
        if following:
            self._coalesced.inc(len(following) - len(alone))
            self._misses.inc(len(alone))
        if alone:
            ran = await executor.execute_many([items[i] for i in alone], limits, [stops[i] for i in alone])
            for i, result in zip(alone, ran, strict=True):
                results[i] = result

    async def _lookup(self, keys: list[ItemKey]) -> list[list[bytes | None] | None]:
        """None for every key when the store fails: the items then simply run."""
        if not keys:
            return []
        try:
            return list(await self.store.get_many([(k.entry, (CODE_FIELD, *k.tests)) for k in keys]))
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
        self.metrics.test_cache_bytes.set(getattr(self.store, "bytes", 0))

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
    cache = ResultCache(store, metrics, settings.sandbox_allowed_modules)
    try:
        yield cache
    finally:
        await cache.close()
