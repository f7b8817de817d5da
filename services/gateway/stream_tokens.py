"""Short-lived stream tokens: EventSource cannot send an Authorization header, so a client
first asks for a token (with its API key) that opens the event stream of ONE session as
ONE user, for a few minutes. Tokens are HMAC-signed, never stored.

The signing key is derived from `VIDSYNTH_STREAM_TOKEN_SECRET`, else from the mesh token
(so every gateway replica accepts every other's tokens), else it is random per process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from pydantic import Field, SecretStr

from libs.common.errors import VidsynthError
from libs.common.settings import MeshSettings, VidsynthSettings

TOKEN_VERSION = "st1"  # noqa: S105 - a format tag, not a secret
_KEY_CONTEXT = b"vidsynth/stream-token/v1"


class StreamTokenSettings(VidsynthSettings):
    stream_token_secret: SecretStr = Field(
        SecretStr(""),
        description="Key material for stream tokens; empty derives it from the mesh token "
        "(or a random per-process key when that is empty too).",
    )
    stream_token_ttl_seconds: int = Field(
        300, ge=10, le=86_400, description="How long a stream token may be used to open a stream."
    )


@dataclass(frozen=True)
class StreamGrant:
    session_id: str
    user_id: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokenSigner:
    def __init__(self, secret: bytes, ttl_seconds: int) -> None:
        self._key = hmac.new(secret, _KEY_CONTEXT, hashlib.sha256).digest()
        self.ttl_seconds = ttl_seconds

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, f"{TOKEN_VERSION}.{payload}".encode(), hashlib.sha256).digest())

    def issue(self, session_id: str, user_id: str, now: float | None = None) -> tuple[str, StreamGrant]:
        expires_at = int(now if now is not None else time.time()) + self.ttl_seconds
        grant = StreamGrant(session_id, user_id, expires_at)
        payload = _b64(json.dumps({"s": session_id, "u": user_id, "e": expires_at}).encode())
        return f"{TOKEN_VERSION}.{payload}.{self._sign(payload)}", grant

    def verify(self, token: str, session_id: str, now: float | None = None) -> StreamGrant:
        """The grant of a valid, unexpired token for `session_id`; else STREAM_TOKEN_INVALID."""
        version, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if version != TOKEN_VERSION or not payload or not signature:
            raise VidsynthError("STREAM_TOKEN_INVALID")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise VidsynthError("STREAM_TOKEN_INVALID")
        try:
            claims = json.loads(_unb64(payload))
            grant = StreamGrant(str(claims["s"]), str(claims["u"]), int(claims["e"]))
        except (ValueError, KeyError, TypeError):
            raise VidsynthError("STREAM_TOKEN_INVALID") from None
        current = now if now is not None else time.time()
        if grant.expires_at <= current or not grant.user_id:
            raise VidsynthError("STREAM_TOKEN_INVALID")
        if not hmac.compare_digest(grant.session_id.encode(), session_id.encode()):
            raise VidsynthError("STREAM_TOKEN_INVALID")
        return grant


def signer_from_settings(mesh: MeshSettings, settings: StreamTokenSettings) -> StreamTokenSigner:
    secret = settings.stream_token_secret.get_secret_value() or mesh.mesh_token.get_secret_value()
    material = secret.encode() if secret else secrets.token_bytes(32)
    return StreamTokenSigner(material, settings.stream_token_ttl_seconds)
