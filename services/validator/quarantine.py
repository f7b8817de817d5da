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
from libs.common.pagination import open_page

DIR_MODE = 0o700
PAYLOAD_NAME = "payload.bin"
REPORT_NAME = "report.json"


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
    """Blocking: newest first (ties by id); the page token holds the last entry's pair."""
    page = open_page("ListQuarantine", page_size, page_token, _cursor)
    entries = [e for e in root.iterdir() if e.is_dir()] if root.is_dir() else []
    records = sorted((r for r in map(_read, entries) if r is not None), key=_key, reverse=True)
    if page.cursor is not None:
        records = [r for r in records if _key(r) < page.cursor]
    return page.finish(records[: page.limit], _key)


def _key(record: QuarantineRecord) -> tuple[str, str]:
    return (record.create_time, record.quarantine_id)


def _cursor(values: list) -> tuple[str, str]:
    create_time, quarantine_id = values
    if not isinstance(create_time, str) or not ids.is_valid_id("quarantine", quarantine_id):
        raise ValueError("not a quarantine cursor")
    return (create_time, quarantine_id)
