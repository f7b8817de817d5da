"""AIP-158 page tokens: an opaque cursor, never an authorization.

The token only says where the previous page ended; the query is always scoped to
the caller, so a token handed to someone else lists nothing of its creator's.
"""

from __future__ import annotations

import base64
import binascii
import json

from libs.common import ids
from libs.common.errors import FieldViolation, VidsynthError
from services.session.store import PageCursor

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def page_size(requested: int) -> int:
    if requested < 0:
        raise VidsynthError(
            "INVALID_ARGUMENT",
            "page_size must not be negative.",
            [FieldViolation("page_size", "must be 0 (the default) or more")],
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(cursor: PageCursor) -> str:
    raw = json.dumps([cursor.create_time, cursor.session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> PageCursor | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        create_time, session_id = json.loads(raw)
        if isinstance(create_time, bool) or not isinstance(create_time, int | float):
            raise ValueError("bad time")
        if not ids.is_valid_id("session", session_id):
            raise ValueError("bad id")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise VidsynthError(
            "INVALID_ARGUMENT",
            "page_token is not a token from a previous response.",
            [FieldViolation("page_token", "must be a next_page_token returned by ListSessions")],
        ) from None
    return PageCursor(float(create_time), session_id)
