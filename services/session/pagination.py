"""Where a page of sessions ends, in page tokens (libs/common/pagination.py)."""

from __future__ import annotations

from libs.common import ids
from libs.common.pagination import Scalar
from services.session.records import SessionRecord
from services.session.store import PageCursor


def session_cursor(values: list[Scalar]) -> PageCursor:
    """Sessions are listed newest first, ties by id: the cursor is the last one's pair."""
    create_time, session_id = values
    if not isinstance(create_time, int | float) or not ids.is_valid_id("session", session_id):
        raise ValueError("not a session cursor")
    return PageCursor(float(create_time), str(session_id))


def session_key(record: SessionRecord) -> tuple[float, str]:
    return (record.create_time, record.session_id)
