"""The queue's wire format and the Redis plumbing gateway and workers share.

A job is one item: the raw response, its tests and its limits, plus where to send the result and until
when it is worth running. Times are on the Redis server's clock (`RedisClock`), so hosts whose clocks
disagree still agree on deadlines. Workers run the whole `TestExecutor.execute` (plan, sandbox, judge), so
the gateway stays light and the expected values never leave trusted processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from acecoder_reward.sandbox_worker import judge
from acecoder_reward.sandbox_worker.executor import ItemResult, Limits
from acecoder_reward.sandbox_worker.queue_keys import DATA_FIELD, GROUP, QueueKeys

# redis-py annotates stream fields as an invariant dict of a union; ours are str -> bytes.
StreamFields = dict[Any, Any]


@dataclass
class Job:
    id: str  # unique per gateway instance: results are deduplicated by it
    reply: str  # the reply list of the gateway that waits for it
    deadline_ms: int  # Redis clock; past it the gateway no longer waits, so workers skip the job
    enqueued_ms: int  # Redis clock, when the gateway queued it
    response: str
    tests: list[Any]  # assert sources, or io_tests' wire dicts
    limits: dict[str, Any]
    request_id: str | None = None  # the gateway request it belongs to, for the worker's log lines
    stop_on_first_failure: bool = False

    def encode_data(self) -> bytes:
        return orjson.dumps(self)  # orjson serialises dataclasses natively (asdict would deep-copy first)

    def encode(self) -> StreamFields:
        return {DATA_FIELD: self.encode_data()}

    @classmethod
    def decode(cls, fields: StreamFields) -> Job:
        data = orjson.loads(fields[DATA_FIELD.encode()])
        # Fields this worker does not know (a newer gateway mid-rollout) are ignored, not fatal.
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def limits_capped(self, caps: Limits) -> Limits:
        """The gateway capped the limits already; a worker still holds them to its own maxima."""
        return Limits(**{name: min(self.limits[name], getattr(caps, name)) for name in Limits.__dataclass_fields__})


def encode_result(job_id: str, result: ItemResult, queued_s: float, run_s: float, worker: str,
                  profile: str | None = None) -> bytes:
    """`profile`: the worker's run profile, so a gateway caches only results run the way its cache key says."""
    return orjson.dumps({"id": job_id, "code": result.code, "tests": result.tests, "queued_s": queued_s,
                         "run_s": run_s, "worker": worker, "profile": profile})


@dataclass
class QueuedResult:
    job_id: str
    item: ItemResult
    queued_s: float  # enqueue -> claim
    run_s: float  # claim -> result stored


def decode_result(raw: bytes) -> QueuedResult:
    data = orjson.loads(raw)
    profile = data.get("profile")  # absent from an older worker's results
    item = ItemResult(data["code"], judge.TestsResult(**data["tests"]),
                      profile=profile if isinstance(profile, str) else None)
    return QueuedResult(data["id"], item, float(data["queued_s"]), float(data["run_s"]))


class RedisClock:
    """Milliseconds on the Redis server's clock, from the local clock plus a measured offset."""

    def __init__(self) -> None:
        self.offset_ms = 0.0

    async def sync(self, redis: aioredis.Redis) -> None:
        before = time.time()
        seconds, micros = await redis.time()
        after = time.time()
        self.offset_ms = (seconds * 1000 + micros / 1000) - (before + after) * 500

    def now_ms(self) -> int:
        return int(time.time() * 1000 + self.offset_ms)


def connect(url: str, client_name: str) -> aioredis.Redis:
    """Short connect and read timeouts: an unreachable Redis is a quick 503, never a hung request. Blocking
    reads pass their own, longer timeout."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=15,
                                   client_name=client_name, retry_on_timeout=False)


def describe_url(url: str) -> str:
    """The URL without its credentials, for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def ensure_group(redis: aioredis.Redis, keys: QueueKeys) -> None:
    """Creates the stream and its consumer group if missing (after a Redis restart, say). From id 0, so jobs
    queued before the group existed are delivered too: acknowledged entries are deleted, so everything
    still in the stream is work."""
    try:
        await redis.xgroup_create(keys.jobs, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
