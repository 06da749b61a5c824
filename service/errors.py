"""Domain errors and their HTTP form (status, body, headers), defined once here.

Routes and core code raise them; `app._install_error_handlers` answers them for routes, and the raw ASGI
middlewares that refuse a request before any route runs (auth, body size) answer them with `send_error`,
so every refusal has the same shape whoever raises it.

ServiceError
 +-- Unauthorized        401  no valid bearer token; carries WWW-Authenticate
 +-- InvalidRequest      422  a field is wrong; names the field
 +-- PayloadTooLarge     413  body over the configured size
 +-- ClientDisconnected  499  the client went away; its work was cancelled (nobody reads this answer)
 +-- Overloaded          429  admission limit reached; carries Retry-After
 +-- BadGateway          502  the reward-model server answered something unusable
 +-- Unavailable         503  the sandbox pool is not ready, Redis is unreachable, no worker is alive, or no
 |                           reward-model server answers
 +-- DeadlineExceeded    504  queued jobs, or a reward-model batch, did not finish in time
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any


class ServiceError(Exception):
    status_code = 500
    code = "internal_error"
    retry_after_s: int | None = None  # sent as Retry-After when set

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="acecoder-reward"'}


class InvalidRequest(ServiceError):
    status_code = 422
    code = "invalid_request"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class ClientDisconnected(ServiceError):
    status_code = 499  # nginx's "client closed request": counted in metrics, never seen by the client
    code = "client_disconnected"


class Overloaded(ServiceError):
    status_code = 429
    code = "overloaded"
    retry_after_s = 1


class BadGateway(ServiceError):
    status_code = 502
    code = "upstream_error"


class Unavailable(ServiceError):
    status_code = 503
    code = "unavailable"
    retry_after_s = 1


class DeadlineExceeded(ServiceError):
    status_code = 504
    code = "timeout"


async def send_error(send: Callable[[dict[str, Any]], Awaitable[None]], exc: ServiceError) -> None:
    """Answers `exc` on a raw ASGI connection (for middlewares that run before the app's handlers)."""
    body = json.dumps(exc.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *((k.lower().encode(), v.encode()) for k, v in exc.headers().items())]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
