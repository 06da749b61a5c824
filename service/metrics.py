"""Prometheus metrics, on a registry owned by the app (so several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("acecoder_requests_total", "HTTP requests by route and status code.",
                                ["route", "code"], registry=r)
        self.latency = Histogram("acecoder_request_latency_seconds", "HTTP request latency by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.test_outcomes = Counter("acecoder_test_outcomes_total", "Per-test outcomes.", ["outcome"], registry=r)
        self.programs = Counter("acecoder_programs_total", "Programs judged, by program status.", ["status"],
                                registry=r)
        self.sandbox_kills = Counter("acecoder_sandbox_kills_total", "Sandbox runs ended from outside, by reason.",
                                     ["reason"], registry=r)
        self.program_seconds = Histogram("acecoder_program_run_seconds", "Sandbox wall time per program.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.pending_items = Gauge("acecoder_pending_items", "Items accepted and not yet finished.", registry=r)
        self.rejected = Counter("acecoder_rejected_total", "Requests refused before work, by reason.", ["reason"],
                                registry=r)
