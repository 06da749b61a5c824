"""What the client raises. Every error carries the service's JSON error (code, message, field) when it sent one.

RewardServiceError
 +-- InvalidRequestError   400/401/413/422: the request is wrong; retrying will not help
 +-- OverloadedError       429: still refused after the retries
 +-- UnavailableError      503 (or the service unreachable): still so after the retries
 +-- UpstreamError         502/504: the reward model or the queue failed for this request
"""

from __future__ import annotations


class RewardServiceError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


class InvalidRequestError(RewardServiceError):
    pass


class OverloadedError(RewardServiceError):
    pass


class UnavailableError(RewardServiceError):
    pass


class UpstreamError(RewardServiceError):
    pass


def error_for(status: int, body: object) -> RewardServiceError:
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or f"the reward service answered {status}")
    kind: type[RewardServiceError] = {429: OverloadedError, 503: UnavailableError, 502: UpstreamError,
                                      504: UpstreamError}.get(status, InvalidRequestError if status < 500
                                                              else RewardServiceError)
    return kind(message, status=status, code=error.get("code"), field=error.get("field"))
