"""Safe copies in a session's assets directory: written under a temporary generated
name, then renamed into place, so a reader never sees half a file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from libs.common import ids

PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class SafeCopy:
    """A normalised copy ready to publish: a partial file already written."""

    partial: Path
    suffix: str
    content_type: str
    # Computed by whoever last read all of `data` anyway; publish() hashes when empty.
    sha256: str = ""


def partial_path(assets_dir: Path, suffix: str) -> Path:
    return assets_dir / f"{PARTIAL_PREFIX}{secrets.token_hex(12)}{suffix}"


@dataclass(frozen=True)
class Published:
    asset_id: str
    stored_name: str
    size_bytes: int
    sha256: str


def publish(partial: Path, suffix: str, sha256: str = "") -> Published:
    """Blocking: renames a finished partial file to a generated asset name."""
    digest = sha256
    if not digest:
        with partial.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    asset_id = ids.new_id("asset")
    stored_name = f"{asset_id}{suffix}"
    partial.chmod(0o600)
    size = partial.stat().st_size
    os.replace(partial, partial.parent / stored_name)
    return Published(asset_id, stored_name, size, digest)


def remove(assets_dir: Path, stored_name: str) -> None:
    """Blocking: deletes a stored asset by its generated name (never a path from outside)."""
    if not stored_name or "/" in stored_name or stored_name.startswith("."):
        return
    with contextlib.suppress(FileNotFoundError):
        (assets_dir / stored_name).unlink()


def discard(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
