"""Per-API-key token-bucket rate limit: 429 RATE_LIMITED with Retry-After.

Only the API (`/v1/...`) is limited: health probes, metrics and the web UI's static
files are not. Requests with a valid key are limited per key; anything else (no key,
a wrong key, a stream token) per client address, so guessing keys is throttled too.
Buckets live in a bounded LRU map.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.errors import VidsynthError
from libs.common.identity import Keyring
from services.gateway.asgi_problems import send_problem

LIMITED_PREFIX = "/v1/"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """`rate` tokens per second up to `burst`; each request takes one."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_buckets: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until a token is free."""
        now = self._clock()
        bucket = self._buckets.pop(key, None) or _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        self._buckets[key] = bucket
        if len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return ""


def bucket_key(scope: Scope, keyring: Keyring) -> str:
    scheme, _, key = _header(scope, b"authorization").partition(" ")
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
