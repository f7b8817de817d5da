"""Per-API-key token-bucket rate limit: 429 RATE_LIMITED with Retry-After.

Only the API (`/v1/...`) is limited: health probes, metrics and the web UI's static
files are not. Requests with a valid key are limited per key; anything else (no key,
a wrong key, a stream token) per client address, so guessing keys is throttled too.
Buckets live in a bounded LRU map.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.errors import VidsynthError
from libs.common.identity import Keyring
from libs.common.rate_limit import TokenBucketLimiter
from services.gateway.asgi_problems import send_problem

LIMITED_PREFIX = "/v1/"


def bucket_key(scope: Scope, keyring: Keyring) -> str:
    scheme, _, key = Headers(scope=scope).get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() == "bearer" and key and keyring.user_for_key(key) is not None:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limiter: TokenBucketLimiter, keyring: Keyring) -> None:
        self.app = app
        self._limiter = limiter
        self._keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        wait = self._limiter.acquire(bucket_key(scope, self._keyring))
        if wait > 0 and scope["type"] == "http":
            await send_problem(scope, receive, send, VidsynthError("RATE_LIMITED", retry_after_seconds=wait))
            return
        if wait > 0:  # a WebSocket handshake: refuse before accepting
            await send({"type": "websocket.close", "code": 1008, "reason": "RATE_LIMITED"})
            return
        await self.app(scope, receive, send)
