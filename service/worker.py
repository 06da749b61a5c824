"""`acecoder-reward worker` and `acecoder-reward worker-health`: the queue worker process and its probe."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys

import orjson
import redis
import uvloop

from acecoder_reward.sandbox_worker.job_queue import describe_url
from acecoder_reward.sandbox_worker.queue_keys import QueueKeys
from acecoder_reward.sandbox_worker.queue_worker import QueueWorker, WorkerConfig, default_worker_name
from acecoder_reward.service.executors import embedded_executor, limit_caps
from acecoder_reward.service.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings, concurrency: int | None, name: str | None) -> None:
    if settings.redis_url is None:
        sys.exit("acecoder-reward worker: set ACECODER_REDIS_URL to the Redis the gateway queues jobs on")
    uvloop.run(_work(settings, concurrency or settings.resolved_pool_size(), name or default_worker_name()))


async def _work(settings: Settings, concurrency: int, name: str) -> None:
    assert settings.redis_url is not None
    config = WorkerConfig(
        redis_url=settings.redis_url.get_secret_value(), prefix=settings.queue_prefix, name=name,
        concurrency=concurrency, heartbeat_s=settings.worker_heartbeat_s,
        heartbeat_ttl_s=settings.worker_heartbeat_ttl_s, visibility_timeout_s=settings.queue_visibility_timeout_s,
        max_deliveries=settings.queue_max_deliveries, drain_s=settings.worker_drain_s,
        result_ttl_s=settings.queue_result_ttl_s, dead_letter_max=settings.queue_dead_letter_max)
    # The zygotes start (and fail closed, if the kernel refuses isolation) before the worker claims anything.
    async with embedded_executor(settings, concurrency) as executor:
        worker = QueueWorker(config, executor, limit_caps(settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()


def check_health(settings: Settings, name: str | None) -> int:
    """Exit status for a Kubernetes exec probe: 0 while this host's worker (or the named one) keeps its
    health key fresh in Redis, 1 otherwise. The key expires when the worker stops beating."""
    if settings.redis_url is None:
        print("ACECODER_REDIS_URL is not set", file=sys.stderr)
        return 1
    keys = QueueKeys(settings.queue_prefix)
    url = settings.redis_url.get_secret_value()
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        found = [keys.worker(name)] if name else list(client.scan_iter(keys.worker_pattern, count=1000))
        records = [client.get(k) for k in found]
    except redis.RedisError as exc:
        print(f"Redis at {describe_url(url)} unreachable: {exc}", file=sys.stderr)
        return 1
    live = [orjson.loads(r) for r in records if r is not None]
    if not name:
        live = [r for r in live if r.get("host") == socket.gethostname()]
    if not live:
        print(f"no live worker {name or 'on ' + socket.gethostname()}", file=sys.stderr)
        return 1
    for record in live:
        print(orjson.dumps(record).decode())
    return 0
