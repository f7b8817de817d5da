"""Quarantine: refused-as-dangerous uploads are moved (never copied) into a 0700
directory next to a JSON report of who sent what, when, and what was found."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from libs.common import ids
from libs.common.errors import FieldViolation, VidsynthError

DIR_MODE = 0o700
PAYLOAD_NAME = "payload.bin"
REPORT_NAME = "report.json"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class QuarantineRecord:
    quarantine_id: str
    session_id: str
    user_id: str
    original_filename: str
    declared_content_type: str
    detected_type: str
    sha256: str
    size_bytes: int
    signature: str
    reason_code: str
    create_time: str


def new_record(**fields) -> QuarantineRecord:
    return QuarantineRecord(
        quarantine_id=ids.new_id("quarantine"), create_time=datetime.now(UTC).isoformat(), **fields
    )


def quarantine(root: Path, payload: Path, record: QuarantineRecord) -> Path:
    """Blocking: moves `payload` into its own entry under `root` and writes the report."""
    root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    root.chmod(DIR_MODE)
    entry = root / record.quarantine_id
    entry.mkdir(mode=DIR_MODE)
    try:
        target = entry / PAYLOAD_NAME
        shutil.move(payload, target)
        target.chmod(0o600)
        fd = os.open(entry / REPORT_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(record), fh, indent=2)
    except OSError:
        # e.g. a full disk: no entry without its report (the listing could not show it)
        shutil.rmtree(entry, ignore_errors=True)
        raise
    return entry


def _read(entry: Path) -> QuarantineRecord | None:
    try:
        return QuarantineRecord(**json.loads((entry / REPORT_NAME).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def list_records(root: Path, page_size: int, page_token: str) -> tuple[list[QuarantineRecord], str]:
    """Blocking: newest first; the page token is the id of the last entry returned."""
    if page_size < 0:
        raise VidsynthError("INVALID_ARGUMENT", "page_size must not be negative.")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if page_token and not ids.is_valid_id("quarantine", page_token):
        raise VidsynthError(
            "INVALID_ARGUMENT", "The page token is not valid.", [FieldViolation("page_token", "unknown")]
        )
    entries = [e for e in root.iterdir() if e.is_dir()] if root.is_dir() else []
    records = sorted(
        (r for r in map(_read, entries) if r is not None),
        key=lambda r: (r.create_time, r.quarantine_id),
        reverse=True,
    )
    if page_token:
        ids_in_order = [r.quarantine_id for r in records]
        start = ids_in_order.index(page_token) + 1 if page_token in ids_in_order else len(records)
        records = records[start:]
    page = records[:size]
    next_token = page[-1].quarantine_id if len(records) > size else ""
    return page, next_token
