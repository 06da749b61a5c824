"""Prometheus metrics, on a registry owned by the app (so several apps can live in one test process)."""

from __future__ import annotations

from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry

QUEUE_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _MemoLabels:
    """`labels(*values)` remembered per values: prometheus_client's checks and locks on every call (~2 us, and a
    cached /get_reward makes about six). Valid because no child is ever removed (no `remove`, no `clear`)."""

    def labels(self, *values: Any, **named: Any) -> Any:
        if named:
            return super().labels(*values, **named)  # type: ignore[misc]
        memo: dict[tuple[Any, ...], Any] = self.__dict__.setdefault("_memo", {})
        child = memo.get(values)
        if child is None:
            child = memo[values] = super().labels(*values)  # type: ignore[misc]
        return child


class Counter(_MemoLabels, prometheus_client.Counter):
    pass


class Gauge(_MemoLabels, prometheus_client.Gauge):
    pass


class Histogram(_MemoLabels, prometheus_client.Histogram):
    pass


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("acecoder_requests_total", "HTTP requests by route and status code.",
                                ["route", "code"], registry=r)
        self.latency = Histogram("acecoder_request_latency_seconds", "HTTP request latency by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.test_outcomes = Counter("acecoder_test_outcomes_total", "Per-test outcomes.", ["outcome"], registry=r)
        self.tests_judged = Counter("acecoder_tests_judged_total", "Tests judged, by where: trusted (split, judged "
                                    "outside the candidate's process) or sandbox (judged inside it; forgeable).",
                                    ["where"], registry=r)
        self.programs = Counter("acecoder_programs_total", "Programs judged, by program status.", ["status"],
                                registry=r)
        self.sandbox_kills = Counter("acecoder_sandbox_kills_total", "Sandbox runs ended from outside, by reason.",
                                     ["reason"], registry=r)
        self.program_seconds = Histogram("acecoder_program_run_seconds", "Sandbox wall time per program.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.pending_items = Gauge("acecoder_pending_items", "Items accepted and not yet finished.", registry=r)
        self.test_cache = Counter("acecoder_test_cache_items_total", "Items with tests, by how the test-result "
                                  "cache answered: hit (stored outcomes), coalesced (an identical item's run in "
                                  "flight), miss (run), bypass (the request sent cache=false, or the cache is off).",
                                  ["result"], registry=r)
        self.test_cache_stored = Counter("acecoder_test_cache_stored_total", "Items whose outcomes were stored (runs "
                                         "that timed out, were killed or failed are not).", registry=r)
        self.test_cache_bytes = Gauge("acecoder_test_cache_bytes", "Size of the test-result cache, as last seen.",
                                      registry=r)
        self.test_cache_errors = Counter("acecoder_test_cache_errors_total", "Cache operations that failed (the "
                                         "items then ran), by operation.", ["operation"], registry=r)
        self.rejected = Counter("acecoder_rejected_total", "Requests refused before work, by reason.", ["reason"],
                                registry=r)

        # Queue mode (ACECODER_REDIS_URL set). Gauges are read from Redis, so every gateway shows the same values.
        self.queue_depth = Gauge("acecoder_queue_depth", "Jobs in the stream: queued plus being run.", registry=r)
        self.queue_pending = Gauge("acecoder_queue_pending_jobs", "Jobs claimed by a worker, not yet acknowledged.",
                                   registry=r)
        self.live_workers = Gauge("acecoder_queue_live_workers", "Workers with a fresh heartbeat.", registry=r)
        self.queue_events = Gauge("acecoder_queue_events", "Cumulative queue events recorded in Redis, by kind "
                                  "(reclaimed, dead_lettered, expired, handed_back, withdrawn, done).", ["kind"],
                                  registry=r)
        self.redis_up = Gauge("acecoder_redis_up", "1 while Redis answers.", registry=r)
        self.jobs_enqueued = Counter("acecoder_queue_jobs_enqueued_total", "Jobs this gateway queued.", registry=r)
        self.jobs_requeued = Counter("acecoder_queue_jobs_requeued_total",
                                     "Accepted jobs queued again after they vanished from Redis.", registry=r)
        self.duplicate_results = Counter("acecoder_queue_duplicate_results_total",
                                         "Results ignored: a job run twice, or finished after its request ended.",
                                         registry=r)
        self.queue_wait = Histogram("acecoder_queue_wait_seconds", "Job latency from enqueue to a worker's claim.",
                                    buckets=QUEUE_BUCKETS, registry=r)
        self.job_run = Histogram("acecoder_queue_job_run_seconds", "Job latency on the worker: plan, sandbox, judge.",
                                 buckets=QUEUE_BUCKETS, registry=r)
        self.queue_added = Histogram("acecoder_queue_added_seconds",
                                     "Round trip through the queue minus the worker's run time.",
                                     buckets=QUEUE_BUCKETS, registry=r)

        # Reward model (ACECODER_RM_BACKEND set).
        self.rm_batch_items = Histogram("acecoder_rm_batch_items", "Inputs per batch sent to the reward model.",
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.rm_batch_tokens = Histogram("acecoder_rm_batch_tokens", "Tokens per batch sent to the reward model.",
                                         buckets=(64, 256, 1024, 4096, 16384, 65536, 262144), registry=r)
        self.rm_queue_time = Histogram("acecoder_rm_queue_seconds", "Time an input waited for its batch to start.",
                                       buckets=QUEUE_BUCKETS, registry=r)
        self.rm_inputs = Counter("acecoder_rm_inputs_total", "Model inputs by how they were answered: computed, "
                                 "cache (a recent identical input), dedup (an identical input in flight), dropped "
                                 "(its caller left before compute).", ["source"], registry=r)
        self.rm_pending = Gauge("acecoder_rm_pending_inputs", "Model inputs queued or being computed.", registry=r)
        self.rm_upstream_latency = Histogram("acecoder_rm_upstream_seconds", "Reward-model backend call latency.",
                                             ["backend"], buckets=LATENCY_BUCKETS, registry=r)
        self.rm_upstream_errors = Counter("acecoder_rm_upstream_errors_total", "Failed reward-model backend calls, "
                                          "by kind (connect, dropped, timeout, status_5xx, status_4xx, "
                                          "bad_response, other, in_process).",
                                          ["kind"], registry=r)
