"""Per-caller token-bucket rate limit: 429 RATE_LIMITED with Retry-After.

Only the API (`/v1/...`) is limited: health probes, metrics and the web UI's static
files are not. Requests with a valid key are limited per key; a progress stream opened
with a valid stream token (`?token=`, what browsers' EventSource sends) per the token's
user, so junk traffic from the same address (or from everyone behind one proxy) cannot
lock users out of their own progress. Anything else (no key, a wrong key, a bad token)
is limited per client address, so guessing keys and tokens is throttled too. Buckets live
in a bounded LRU map.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.errors import VidsynthError
from libs.common.identity import Keyring
from libs.common.rate_limit import TokenBucketLimiter
from services.gateway.asgi_problems import send_problem
from services.gateway.stream_tokens import StreamTokenSigner

LIMITED_PREFIX = "/v1/"
# /v1/sessions/<id>/<endpoint>: the endpoints a stream token opens.
STREAM_ENDPOINTS = frozenset({"events", "ws"})
MAX_TOKEN_CHARS = 1024


def stream_token_user(scope: Scope, signer: StreamTokenSigner) -> str | None:
    """The user of a valid stream token for this stream's session, else None."""
    parts = scope["path"].split("/")  # ["", "v1", "sessions", <id>, <endpoint>]
    if len(parts) != 5 or parts[2] != "sessions" or parts[4] not in STREAM_ENDPOINTS:
        return None
    query = scope.get("query_string", b"").decode("latin-1")
    token = next((value for name, value in parse_qsl(query) if name == "token"), "")
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        return signer.verify(token, parts[3]).user_id
    except VidsynthError:
        return None


def bucket_key(scope: Scope, keyring: Keyring, signer: StreamTokenSigner | None = None) -> str:
    scheme, _, key = Headers(scope=scope).get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() == "bearer" and key and keyring.user_for_key(key) is not None:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    if signer is not None and (user := stream_token_user(scope, signer)) is not None:
        return "user:" + user
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: TokenBucketLimiter,
        keyring: Keyring,
        signer: StreamTokenSigner | None = None,
    ) -> None:
        self.app = app
        self._limiter = limiter
        self._keyring = keyring
        self._signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        wait = self._limiter.acquire(bucket_key(scope, self._keyring, self._signer))
        if wait > 0 and scope["type"] == "http":
            await send_problem(scope, receive, send, VidsynthError("RATE_LIMITED", retry_after_seconds=wait))
            return
        if wait > 0:  # a WebSocket handshake: refuse before accepting
            await send({"type": "websocket.close", "code": 1008, "reason": "RATE_LIMITED"})
            return
        await self.app(scope, receive, send)
