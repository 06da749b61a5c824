"""Optional bearer-token auth on every route but /health and /metrics (probes and scrapers stay open).

Checked on the raw ASGI request before the body is read, so an unauthenticated caller costs nothing more
than its headers. Tokens are compared in constant time, against every configured token (so the position of
a match does not show either), which lets operators rotate by listing the old and the new token at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

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
        if scheme.lower() == b"bearer" and self._known(presented.strip()):
            await self.app(scope, receive, send)
            return
        await self._reject(send, "missing bearer token" if not header else "invalid bearer token")

    def _known(self, presented: bytes) -> bool:
        digest = hashlib.sha256(presented).digest()
        matches = [hmac.compare_digest(digest, token) for token in self.tokens]
        return any(matches)

    async def _reject(self, send: Send, why: str) -> None:
        body = json.dumps({"error": {"code": "unauthorized", "field": "Authorization",
                                     "message": f"{why}: send 'Authorization: Bearer <token>'"}}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="acecoder-reward"')]})
        await send({"type": "http.response.body", "body": body})
