"""Job webhooks: allowed hosts only, no redirects followed, HMAC-SHA256 over
`timestamp.body`, retried with exponential backoff. Each delivery is a span of the
job's trace and carries its W3C `traceparent`, so the receiver can continue it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import urlsplit

import httpx
import structlog

from libs.common import tracing
from libs.common.errors import FieldViolation, VidsynthError

log = structlog.get_logger("vidsynth.stage_runner.webhooks")

SIGNATURE_HEADER = "X-Vidsynth-Signature"
TIMESTAMP_HEADER = "X-Vidsynth-Timestamp"
EVENT_HEADER = "X-Vidsynth-Event"
DELIVERY_HEADER = "X-Vidsynth-Delivery"
MAX_URL_LENGTH = 2048
_RETRYABLE_STATUS = {408, 425, 429}


def _refuse(reason: str) -> VidsynthError:
    return VidsynthError("WEBHOOK_URL_NOT_ALLOWED", None, [FieldViolation("spec.webhook_url", reason)])


def check_webhook_url(url: str, allowed_hosts: frozenset[str], secret_set: bool) -> None:
    """WEBHOOK_URL_NOT_ALLOWED unless `url` is http(s) to an allowed host[:port]."""
    if len(url) > MAX_URL_LENGTH:
        raise _refuse("is too long")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("must be an http or https URL")
    if parts.username or parts.password:
        raise _refuse("must not carry credentials")
    host = parts.hostname.lower()
    try:
        port = parts.port
    except ValueError:
        raise _refuse("has an invalid port") from None
    if not secret_set or not ({host, f"{host}:{port}"} & allowed_hosts):
        raise _refuse("host is not on the allowed list")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>")."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSender:
    def __init__(
        self, secret: str, max_attempts: int, backoff_seconds: float, timeout_seconds: float
    ) -> None:
        self._secret = secret.encode()
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=timeout_seconds, trust_env=False)
        self._tasks: set[asyncio.Task] = set()

    def deliver_later(self, url: str, event_type: str, payload: dict) -> None:
        """Delivers in the background so a slow receiver never holds up the queue."""
        task = asyncio.create_task(self.deliver(url, event_type, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, url: str, event_type: str, payload: dict) -> bool:
        # The URL's path and query may hold the receiver's secret: the span keeps the host.
        attributes = {"server.address": urlsplit(url).hostname or "", "vidsynth.webhook.event": event_type}
        with tracing.span("webhook delivery", attributes, kind=tracing.SpanKind.CLIENT) as delivery:
            delivered = await self._deliver(url, event_type, payload)
            delivery.set_attribute("vidsynth.webhook.delivered", delivered)
            if not delivered:
                tracing.set_error(delivery, "not delivered")
            return delivered

    async def _deliver(self, url: str, event_type: str, payload: dict) -> bool:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        delivery_id = str(uuid.uuid4())
        delay = self._backoff
        for attempt in range(1, self._max_attempts + 1):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                EVENT_HEADER: event_type,
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                DELIVERY_HEADER: delivery_id,
                "User-Agent": "vidsynth-webhooks/1",
            }
            tracing.inject_trace_headers(headers)
            try:
                response = await self._client.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                log.info("webhook.attempt_failed", attempt=attempt, error=type(error).__name__)
            else:
                if 200 <= response.status_code < 300:
                    log.info("webhook.delivered", attempt=attempt, status=response.status_code)
                    return True
                log.info("webhook.attempt_refused", attempt=attempt, status=response.status_code)
                if response.status_code < 500 and response.status_code not in _RETRYABLE_STATUS:
                    return False  # a redirect or a client error will not change on retry
            if attempt < self._max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("webhook.gave_up", attempts=self._max_attempts)
        return False

    async def close(self, grace_seconds: float = 2.0) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._client.aclose()
