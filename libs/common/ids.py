"""Resource ids: generated, prefixed, checked before they touch a path or a query."""

from __future__ import annotations

import re
import secrets

from libs.common.errors import FieldViolation, VidsynthError

_ID_BODY = re.compile(r"[0-9a-f]{24}")
PREFIXES = {"session": "ses_", "job": "job_", "asset": "ast_", "request": "req_", "quarantine": "qua_"}


def new_id(kind: str) -> str:
    return PREFIXES[kind] + secrets.token_hex(12)


def is_valid_id(kind: str, value: str) -> bool:
    prefix = PREFIXES[kind]
    return (
        isinstance(value, str)
        and value.startswith(prefix)
        and _ID_BODY.fullmatch(value[len(prefix) :]) is not None
    )


def check_id(kind: str, value: str, field: str | None = None) -> str:
    """Returns `value` when it is a well-formed id of `kind`, else raises INVALID_ID."""
    if not is_valid_id(kind, value):
        name = field or f"{kind}_id"
        raise VidsynthError(
            "INVALID_ID",
            f"{name} is not a well-formed {kind} id.",
            [FieldViolation(name, f"must look like {PREFIXES[kind]} followed by 24 hex digits")],
        )
    return value
