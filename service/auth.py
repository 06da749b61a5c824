"""Optional bearer-token auth on every route but /health and /metrics (probes and scrapers stay open).

Checked on the raw ASGI request before the body is read, so an unauthenticated caller costs nothing more
than its headers. Tokens are compared in constant time, against every configured token (so the position of
a match does not show either), which lets operators rotate by listing the old and the new token at once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from acecoder_reward.service.errors import Unauthorized, send_error

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
OPEN_PATHS = frozenset({"/health", "/metrics"})


class BearerAuthMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], tokens: list[str]) -> None:
        self.app = app
        # Compared as SHA-256 digests: equal lengths, so not even a token's length shows in the timing.
        self.tokens = [hashlib.sha256(t.encode()).digest() for t in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers", [])).get(b"authorization", b"")
        scheme, _, presented = header.partition(b" ")
        try:
            if not (scheme.lower() == b"bearer" and self._known(presented.strip())):
                why = "missing bearer token" if not header else "invalid bearer token"
                raise Unauthorized(f"{why}: send 'Authorization: Bearer <token>'", field="Authorization")
        except Unauthorized as exc:
            await send_error(send, exc)
            return
        await self.app(scope, receive, send)

    def _known(self, presented: bytes) -> bool:
        digest = hashlib.sha256(presented).digest()
        matches = [hmac.compare_digest(digest, token) for token in self.tokens]
        return any(matches)
