"""The request id of the work in progress, for log lines: set by the gateway per HTTP request, carried in each
queued job, and set again by the worker while it runs that job (a ContextVar: each asyncio task has its own)."""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("acecoder_request_id", default=None)
