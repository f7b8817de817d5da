"""Request body cap: 413 REQUEST_TOO_LARGE. Uploads into a session's assets have their
own, larger cap enforced by the upload route, so that path prefix is skipped here."""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.errors import VidsynthError
from services.gateway.asgi_problems import send_problem

UPLOAD_PATH = re.compile(r"^/v1/sessions/[^/]+/assets(/|$)")


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self._max_bytes = max_bytes
        # Only ever sent, never raised: one instance serves every refusal.
        self._too_large = VidsynthError(
            "REQUEST_TOO_LARGE", f"Request bodies are limited to {max_bytes} bytes."
        )

    def _declared_length(self, scope: Scope) -> int | None:
        try:
            return int(Headers(scope=scope)["content-length"])
        except (KeyError, ValueError):
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or UPLOAD_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = self._declared_length(scope)
        if declared is not None and declared > self._max_bytes:
            await send_problem(scope, receive, send, self._too_large)
            return

        # A body without (or lying about) Content-Length is counted as it arrives.
        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                # Whatever the app made of the aborted read, the answer is 413.
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    await send_problem(scope, receive, send, self._too_large)
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not response_started:
                await send_problem(scope, receive, send, self._too_large)
