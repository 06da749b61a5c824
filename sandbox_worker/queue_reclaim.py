"""Finding and claiming the pending jobs that nobody will finish: those of workers whose heartbeat stopped,
and any job pending longer than the visibility timeout (longer than the longest job)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from sandbox_worker.queue_keys import GROUP, QueueKeys

PENDING_SCAN = 100  # pending entries inspected per pass
MIN_IDLE_MS = 200  # an entry claimed less than this long ago is left alone (its claimer may be starting)
HANDED_BACK_IDLE_MS = 3_600_000  # handed-back entries look long idle, so the next pass takes them


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
        elif consumer["idle"] > 10 * heartbeat_ttl_s * 1000:
            await redis.xgroup_delconsumer(keys.jobs, GROUP, name)
    # Live workers keep the jobs they hold fresh; one past this is held by nobody who knows it.
    found += await redis.xpending_range(keys.jobs, GROUP, "-", "+", PENDING_SCAN,
                                        idle=int(visibility_timeout_s * 1000))
    unique = {e["message_id"]: e for e in found if int(e["time_since_delivered"]) >= MIN_IDLE_MS}
    return list(unique.values())


async def claim(redis: aioredis.Redis, keys: QueueKeys, me: str, entry: Mapping[str, Any]
                ) -> tuple[bytes, dict[Any, Any], int] | None:
    """Takes one entry over; returns (entry id, fields, times delivered including this one), or None when
    another worker was faster or the entry was deleted meanwhile (withdrawn by its gateway). XCLAIM resets
    the idle time, so of several workers racing for one entry only the first gets it."""
    claimed: Any = await redis.xclaim(keys.jobs, GROUP, me, MIN_IDLE_MS, [entry["message_id"]])
    for entry_id, fields in claimed:
        if fields:
            return entry_id, fields, int(entry["times_delivered"]) + 1
    return None
