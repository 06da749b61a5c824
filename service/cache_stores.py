"""Where the test-result cache keeps its entries: in this process (embedded mode) or in Redis (queue mode).

An entry belongs to one program under one context (limits, allowed modules, judge version) and holds one
field per test (keyed by the tests up to it) and one per test list (the run's status and code). Fields are
only ever added, never overwritten: the first run recorded is the one every repeat gets. Both stores are
bounded in bytes and evict the least recently used entry first; the Redis one also expires entries after a TTL.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis

from acecoder_reward.service.step_batch import StepBatcher

# Per-field and per-entry bookkeeping on top of the bytes themselves (two bytes objects and a dict slot per
# field here, hash nodes in Redis), so the bound tracks real memory rather than payload alone.
FIELD_OVERHEAD = 112
ENTRY_OVERHEAD = 512


class CacheStore(Protocol):
    kind: str
    used_bytes: int  # the size it counts, as last seen

    async def get_many(self, lookups: Sequence[tuple[str, Sequence[bytes]]]) -> list[list[bytes | None]]:
        """Per (entry, fields): each field's value, None where absent (all None for a missing entry)."""
        ...

    async def put_many(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> None:
        """Adds fields to entries (creating them); existing fields keep their values."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """An LRU over entries, bounded by the bytes of their fields."""

    kind = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._entries: collections.OrderedDict[str, dict[bytes, bytes]] = collections.OrderedDict()
        self._sizes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, lookups: Sequence[tuple[str, Sequence[bytes]]]) -> list[list[bytes | None]]:
        out: list[list[bytes | None]] = []
        for key, fields in lookups:
            entry = self._entries.get(key)
            if entry is None:
                out.append([None] * len(fields))
                continue
            self._entries.move_to_end(key)
            out.append([entry.get(f) for f in fields])
        return out

    async def put_many(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> None:
        for key, fields in entries:
            entry = self._entries.get(key)
            added = 0
            if entry is None:
                entry = self._entries[key] = {}
                added = ENTRY_OVERHEAD + len(key)
            else:
                self._entries.move_to_end(key)
            for name, value in fields.items():
                if name not in entry:
                    entry[name] = value
                    added += len(name) + len(value) + FIELD_OVERHEAD
            self._sizes[key] = self._sizes.get(key, 0) + added
            self.used_bytes += added
        while self.used_bytes > self.max_bytes and self._entries:
            key, _ = self._entries.popitem(last=False)
            self.used_bytes -= self._sizes.pop(key)

    async def close(self) -> None:
        self._entries.clear()
        self._sizes.clear()
        self.used_bytes = 0


# Both scripts start with a shebang and no flags: Redis refuses them while it is over maxmemory (the cache then
# misses and stores nothing), instead of letting the cache grow past what the job queue may use.
# KEYS[1]: the LRU index (zset: entry key -> last use, ms); KEYS[2..]: entries. ARGV[1]: TTL (ms); then per
# entry: its field count and the fields. A hit refreshes the entry's TTL and its place in the index.
GET_LUA = """#!lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local out = {}
local a = 2
for i = 2, #KEYS do
  local n = tonumber(ARGV[a])
  local values = {}
  for first = 1, n, 1000 do  -- HMGET in chunks: Lua's unpack is bounded by its stack
    local last = math.min(first + 999, n)
    local chunk = redis.call('HMGET', KEYS[i], unpack(ARGV, a + first, a + last))
    for j = 1, #chunk do values[first + j - 1] = chunk[j] end
  end
  a = a + n + 1
  if values[1] then
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.call('ZADD', KEYS[1], 'XX', now, KEYS[i])
  end
  out[i - 1] = values
end
return out
"""

# KEYS[1]: the LRU index; KEYS[2]: entry sizes (hash); KEYS[3]: total bytes; KEYS[4..]: entries. ARGV[1]:
# TTL (ms); ARGV[2]: the byte bound; then per entry: its field count and field, value pairs. Expired entries
# leave the index first, then the least recently used go until the total is within the bound. Returns the
# total. Evicted keys are not in KEYS: this runs on one Redis, never a cluster (the queue's own assumption).
PUT_LUA = f"""#!lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local bound = tonumber(ARGV[2])
local function drop(key)
  local size = tonumber(redis.call('HGET', KEYS[2], key) or '0')
  redis.call('DEL', key)
  redis.call('HDEL', KEYS[2], key)
  redis.call('ZREM', KEYS[1], key)
  return redis.call('DECRBY', KEYS[3], size)
end
local a = 3
for i = 4, #KEYS do
  local n = tonumber(ARGV[a])
  local added = 0
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local old = redis.call('HGET', KEYS[2], KEYS[i])  -- expired (or evicted), not yet pruned: its size goes
    if old then
      redis.call('DECRBY', KEYS[3], old)
      redis.call('HDEL', KEYS[2], KEYS[i])
    end
    added = {ENTRY_OVERHEAD} + #KEYS[i]
  end
  for j = 1, n do
    local name, value = ARGV[a + 2 * j - 1], ARGV[a + 2 * j]
    if redis.call('HSETNX', KEYS[i], name, value) == 1 then added = added + #name + #value + {FIELD_OVERHEAD} end
  end
  a = a + 2 * n + 1
  redis.call('PEXPIRE', KEYS[i], ttl)
  redis.call('HINCRBY', KEYS[2], KEYS[i], added)
  redis.call('INCRBY', KEYS[3], added)
  redis.call('ZADD', KEYS[1], now, KEYS[i])
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl, 'LIMIT', 0, 256)) do drop(key) end
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local evicted = 0
while total > bound and evicted < 4096 do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #oldest == 0 then break end
  total = drop(oldest[1])
  evicted = evicted + 1
end
return total
"""


class RedisStore:
    """Entries as Redis hashes under `{prefix}:cache:`, shared by every gateway of the cluster. The lookups
    (and the stores) of the requests in one event-loop step go to Redis as one script call."""

    kind = "redis"

    def __init__(self, redis: aioredis.Redis, prefix: str, max_bytes: int, ttl_s: float) -> None:
        self.redis = redis
        self.base = f"{prefix}:cache"
        self.max_bytes = max_bytes
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.used_bytes = 0
        self._get = redis.register_script(GET_LUA)
        self._put = redis.register_script(PUT_LUA)
        self._gets = StepBatcher(self._get_now)
        self._puts = StepBatcher(self._put_now)

    def key(self, entry: str) -> str:
        return f"{self.base}:{entry}"

    async def get_many(self, lookups: Sequence[tuple[str, Sequence[bytes]]]) -> list[list[bytes | None]]:
        return await self._gets(lookups)

    async def put_many(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> None:
        await self._puts(entries)

    async def _get_now(self, lookups: Sequence[tuple[str, Sequence[bytes]]]) -> list[list[bytes | None]]:
        args: list[Any] = [self.ttl_ms]
        for _, fields in lookups:
            args.append(len(fields))
            args.extend(fields)
        found: list[list[bytes | None]] = await self._get(
            keys=[f"{self.base}:lru", *(self.key(k) for k, _ in lookups)], args=args)
        return [list(values) for values in found]

    async def _put_now(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> list[None]:
        args: list[Any] = [self.ttl_ms, self.max_bytes]
        for _, fields in entries:
            args.append(len(fields))
            for name, value in fields.items():
                args.extend((name, value))
        self.used_bytes = int(await self._put(
            keys=[f"{self.base}:lru", f"{self.base}:sizes", f"{self.base}:bytes", *(self.key(k) for k, _ in entries)],
            args=args))
        return [None] * len(entries)

    async def close(self) -> None:
        await self._gets.close()
        await self._puts.close()
        await self.redis.aclose()
