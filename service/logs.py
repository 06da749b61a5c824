"""Logging for the gateway and the workers: plain text for a terminal, or one JSON object per line
(`ACECODER_LOG_FORMAT=json`) for a log pipeline; either way every record carries the request id of the work
it belongs to (`sandbox_worker.log_context`), so a request can be followed from gateway to worker."""

from __future__ import annotations

import logging

from acecoder_reward.sandbox_worker.log_context import request_id
from acecoder_reward.service.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}{request_id}", style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per reward-model batch otherwise
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # through our handler, in our format
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
