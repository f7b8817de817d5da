"""AIP-158 pagination for every list RPC: page sizes and opaque page tokens.

A token is the urlsafe base64 (unpadded) of a small versioned JSON array,
`[version, cursor, digest]`: the cursor says where the previous page ended (the sort key
of its last item) and the digest is a hash of the version, the RPC, the request's
filters and the cursor. A token given to another RPC or to the same RPC with other
filters, or one whose bytes were changed, fails the digest and is refused with
INVALID_ARGUMENT (a `page_token` field violation).

A token is an opaque position, never an authorization: the digest has no secret, and
every query is scoped to its caller, so a forged cursor lists nothing the caller could
not list anyway. Clients must not parse tokens; the format may change with its version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from libs.common.errors import FieldViolation, VidsynthError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 512  # what the HTTP API accepts too (services/gateway/api_models.py)
_DIGEST_CHARS = 16
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # unpadded urlsafe base64, as encode_token writes it

Cursor = TypeVar("Cursor")
Item = TypeVar("Item")
Scalar = str | int | float


def page_size(requested: int) -> int:
    """The page size to serve: 0 means the default; larger requests are capped (AIP-158)."""
    if requested < 0:
        raise VidsynthError(
            "INVALID_ARGUMENT",
            "page_size must not be negative.",
            [FieldViolation("page_size", "must be 0 (the default) or more")],
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _digest(method: str, filters: Sequence[Scalar], cursor: Sequence[Scalar]) -> str:
    canonical = json.dumps([TOKEN_VERSION, method, list(filters), list(cursor)], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:_DIGEST_CHARS]


def _bad_token(method: str) -> VidsynthError:
    return VidsynthError(
        "INVALID_ARGUMENT",
        "page_token is not a token from a previous response to this request.",
        [
            FieldViolation(
                "page_token", f"must be a next_page_token returned by {method} with the same filters"
            )
        ],
    )


def encode_token(method: str, filters: Sequence[Scalar], cursor: Sequence[Scalar]) -> str:
    body = [TOKEN_VERSION, list(cursor), _digest(method, filters, cursor)]
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(method: str, filters: Sequence[Scalar], token: str) -> list[Scalar]:
    """The cursor inside a token from `encode_token(method, filters, ...)`."""
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        raise _bad_token(method)
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        version, cursor, digest = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise _bad_token(method) from None
    if (
        version != TOKEN_VERSION
        or not isinstance(cursor, list)
        or not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in cursor)
        or digest != _digest(method, filters, cursor)
    ):
        raise _bad_token(method)
    return cursor


@dataclass(frozen=True)
class Page(Generic[Cursor]):
    """One list request: how many items to serve and where the previous page ended.

    Fetch `limit` (one more than `size`) items after `cursor`, then `finish` them: the
    extra item only says whether another page follows."""

    method: str
    filters: tuple[Scalar, ...]
    size: int
    cursor: Cursor | None

    @property
    def limit(self) -> int:
        return self.size + 1

    def finish(
        self, items: Sequence[Item], key: Callable[[Item], Sequence[Scalar]]
    ) -> tuple[list[Item], str]:
        """(this page's items, next_page_token); the token is empty on the last page."""
        page = list(items[: self.size])
        if len(items) <= self.size:
            return page, ""
        return page, encode_token(self.method, self.filters, key(page[-1]))


def open_page(
    method: str,
    requested_size: int,
    token: str,
    cursor: Callable[[list[Scalar]], Cursor],
    filters: Sequence[Scalar] = (),
) -> Page[Cursor]:
    """Validates a list request's page_size and page_token. `cursor` turns a token's decoded
    values into the store's cursor; a ValueError or TypeError from it refuses the token."""
    size = page_size(requested_size)
    if not token:
        return Page(method, tuple(filters), size, None)
    values = decode_token(method, filters, token)
    try:
        position = cursor(values)
    except (ValueError, TypeError, IndexError):
        raise _bad_token(method) from None
    return Page(method, tuple(filters), size, position)


def int_cursor(values: list[Scalar]) -> int:
    """A cursor of one non-negative integer (a sequence number or an offset)."""
    (value,) = values
    if not isinstance(value, int) or value < 0:
        raise ValueError("not a non-negative integer")
    return value
