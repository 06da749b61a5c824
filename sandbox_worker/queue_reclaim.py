"""Finding and claiming the pending jobs that nobody will finish: those of workers whose heartbeat stopped,
and any job pending longer than the visibility timeout (longer than the longest job)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from acecoder_reward.sandbox_worker.queue_keys import GROUP, HANDED_BACK, QueueKeys

PENDING_SCAN = 100  # pending entries inspected per pass
MIN_IDLE_MS = 200  # an entry claimed less than this long ago is left alone (its claimer may be starting)
HANDED_BACK_IDLE_MS = 3_600_000  # handed-back entries look long idle, so the next pass takes them
# Resets the idle time of the entries a live worker holds, without counting a delivery, and only while they
# are still its own (after a Redis blip another worker may have taken one over). KEYS: jobs. ARGV: group,
# consumer, entry ids. Returns the ids no longer pending at all (withdrawn by their gateway).
REFRESH_LUA = """
local gone = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if not p[1] then
    gone[#gone + 1] = ARGV[i]
  elseif p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  end
end
return gone
"""


async def reclaimable(redis: aioredis.Redis, keys: QueueKeys, me: str, now_ms: int, heartbeat_ttl_s: float,
                      visibility_timeout_s: float) -> list[Mapping[str, Any]]:
    """Pending entries (XPENDING records) of dead consumers, then those past the visibility timeout.
    Consumers gone for long with nothing pending are removed from the group, so it does not grow."""
    members: Any = await redis.zrangebyscore(keys.workers, now_ms - int(heartbeat_ttl_s * 1000), "+inf")
    live = {m.decode() for m in members}
    found: list[Mapping[str, Any]] = []
    for consumer in await redis.xinfo_consumers(keys.jobs, GROUP):
        raw_name = consumer["name"]
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        if name in live or name == me:
            continue
        if consumer["pending"]:
            found += await redis.xpending_range(keys.jobs, GROUP, "-", "+", PENDING_SCAN, consumername=name)
        elif consumer["idle"] > 10 * heartbeat_ttl_s * 1000 and name != HANDED_BACK:
            # A dead worker's name never comes back (names are unique per start); handed-back stays, as a
            # hand-back may land on it at any moment.
            await redis.xgroup_delconsumer(keys.jobs, GROUP, name)
    # Live workers keep the jobs they hold fresh; one past this is held by nobody who knows it.
    found += await redis.xpending_range(keys.jobs, GROUP, "-", "+", PENDING_SCAN,
                                        idle=int(visibility_timeout_s * 1000))
    unique = {e["message_id"]: e for e in found if int(e["time_since_delivered"]) >= MIN_IDLE_MS}
    return list(unique.values())


def _min_idle(entry: Mapping[str, Any]) -> int:
    """XCLAIM resets an entry's idle time. Claiming only if it is still as idle as when we looked means that
    if anyone touched it since (another reclaimer, or its owner's heartbeat), we leave it alone."""
    return max(MIN_IDLE_MS, int(entry["time_since_delivered"]) - 50)


async def claim(redis: aioredis.Redis, keys: QueueKeys, me: str, entry: Mapping[str, Any]
                ) -> tuple[bytes, dict[Any, Any], int] | None:
    """Takes one entry over as a delivery; returns (entry id, fields, deliveries including this one), or
    None when another worker took it first or it was deleted meanwhile (withdrawn by its gateway)."""
    claimed: Any = await redis.xclaim(keys.jobs, GROUP, me, _min_idle(entry), [entry["message_id"]])
    return await _delivered(redis, keys, me, claimed)


async def reserve(redis: aioredis.Redis, keys: QueueKeys, me: str, entry: Mapping[str, Any]) -> bool:
    """Holds an entry without delivering it (JUSTID counts no delivery): other workers see it held by a live
    one and leave it alone while we make room to run it alone."""
    claimed: Any = await redis.xclaim(keys.jobs, GROUP, me, _min_idle(entry), [entry["message_id"]], justid=True)
    return bool(claimed)


async def deliver(redis: aioredis.Redis, keys: QueueKeys, me: str, entry_id: bytes
                  ) -> tuple[bytes, dict[Any, Any], int] | None:
    """Turns a reserved entry into a delivery (counted)."""
    claimed: Any = await redis.xclaim(keys.jobs, GROUP, me, 0, [entry_id])
    return await _delivered(redis, keys, me, claimed)


async def release(redis: aioredis.Redis, keys: QueueKeys, entry_id: bytes) -> None:
    """Gives a reserved entry up, as it was (JUSTID: no delivery counted), for the next reclaim pass."""
    await redis.xclaim(keys.jobs, GROUP, HANDED_BACK, 0, [entry_id], idle=HANDED_BACK_IDLE_MS, justid=True)


async def _delivered(redis: aioredis.Redis, keys: QueueKeys, me: str, claimed: Any
                     ) -> tuple[bytes, dict[Any, Any], int] | None:
    """The delivery count is read back after the claim: the one seen before it may be stale."""
    for entry_id, fields in claimed:
        if not fields:
            continue
        pending: Any = await redis.xpending_range(keys.jobs, GROUP, entry_id, entry_id, 1)
        if not pending or pending[0]["consumer"].decode() != me:
            return None
        return entry_id, fields, int(pending[0]["times_delivered"])
    return None
