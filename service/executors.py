"""Where test jobs run, chosen by settings: the embedded sandbox pool, or Redis-queued workers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from acecoder_reward.sandbox_worker.executor import Limits, TestExecutor
from acecoder_reward.sandbox_worker.pool import PoolConfig, SandboxPool
from acecoder_reward.sandbox_worker.run_profile import run_profile
from acecoder_reward.service.metrics import Metrics
from acecoder_reward.service.queued_executor import QueueConfig, QueuedExecutor
from acecoder_reward.service.settings import Settings

log = logging.getLogger(__name__)


@asynccontextmanager
async def embedded_executor(settings: Settings, size: int = 0) -> AsyncIterator[TestExecutor]:
    """The sandbox pool in this process: the gateway's default, and what each queue worker runs."""
    config = PoolConfig(size=size or settings.resolved_pool_size(), isolation=settings.sandbox_isolation,
                        hidden_paths=tuple(settings.sandbox_hidden_paths), uid_base=settings.sandbox_uid_base,
                        scratch_mb=settings.sandbox_scratch_mb, warm_up=settings.sandbox_warm_up,
                        preload=tuple(settings.sandbox_preload))
    pool = SandboxPool(config)
    await pool.start()
    log.info("sandbox pool ready: %d zygotes, isolation=%s, memory cgroup v%s", config.size, pool.mode, pool.cgroup)
    try:
        profile = run_profile(pool.mode, settings.sandbox_allowed_modules, limit_caps(settings),
                              settings.sandbox_scratch_mb, settings.sandbox_hidden_paths, settings.sandbox_preload)
        yield TestExecutor(pool, settings.sandbox_allowed_modules, profile)
    finally:
        await pool.close()


@asynccontextmanager
async def queued_executor(settings: Settings, metrics: Metrics) -> AsyncIterator[QueuedExecutor]:
    """The gateway side of queue mode: jobs go to Redis, `acecoder-reward worker` processes run them."""
    assert settings.redis_url is not None
    executor = QueuedExecutor(QueueConfig(
        redis_url=settings.redis_url.get_secret_value(), prefix=settings.queue_prefix,
        max_depth=settings.queue_max_depth, request_timeout_s=settings.queue_request_timeout_s,
        heartbeat_ttl_s=settings.worker_heartbeat_ttl_s, audit_interval_s=settings.queue_audit_interval_s), metrics)
    await executor.start()
    try:
        yield executor
    finally:
        await executor.close()


def limit_caps(settings: Settings) -> Limits:
    """The server's maxima, as Limits: what a worker holds queued jobs to."""
    return Limits(test_timeout_s=settings.max_test_timeout_s, program_timeout_s=settings.max_program_timeout_s,
                  memory_mb=settings.max_memory_mb, max_processes=settings.sandbox_max_processes,
                  max_open_files=settings.sandbox_max_open_files, max_file_bytes=settings.sandbox_max_file_bytes,
                  max_output_bytes=settings.sandbox_max_output_bytes,
                  max_result_bytes=settings.sandbox_max_result_bytes)
