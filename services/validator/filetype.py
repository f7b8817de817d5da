"""Type detection by content (libmagic) against the kind's allowlist; the name and the
declared content type must agree with what the bytes are."""

from __future__ import annotations

import threading
from pathlib import Path

import magic

from libs.common.errors import VidsynthError
from services.validator.filenames import extension_of
from services.validator.policy import UNDECLARED_CONTENT_TYPES, AllowedType, allowed_type

# libmagic handles are not thread-safe; one per worker thread.
_local = threading.local()


def _magic() -> magic.Magic:
    if not hasattr(_local, "magic"):
        _local.magic = magic.Magic(mime=True)
    return _local.magic


def detect_mime(path: Path) -> str:
    """Blocking: MIME type of the file's content."""
    return _magic().from_file(str(path))


def detect_mime_of_bytes(data: bytes) -> str:
    """Blocking: MIME type of a buffer (the first bytes of an upload still arriving)."""
    return _magic().from_buffer(data)


def check_type(kind: int, detected: str, filename: str, declared_type: str) -> AllowedType:
    """The allowed type the content is, or FILE_TYPE_NOT_ALLOWED / FILE_CONTENT_MISMATCH."""
    allowed = allowed_type(kind, detected)
    if allowed is None:
        raise VidsynthError(
            "FILE_TYPE_NOT_ALLOWED", f"Files of type {detected} are not accepted for this upload."
        )
    extension = extension_of(filename)
    if extension and extension not in allowed.extensions:
        raise VidsynthError(
            "FILE_CONTENT_MISMATCH", f"The file is {detected} but its name ends in {extension}."
        )
    declared = declared_type.split(";", 1)[0].strip().lower()
    if declared not in UNDECLARED_CONTENT_TYPES and declared not in allowed.declared:
        raise VidsynthError("FILE_CONTENT_MISMATCH", f"The file is {detected} but was declared {declared}.")
    return allowed
