"""The client's file name is only ever used for the extension check and reports, never
as a path; still, names built to deceive (traversal, control characters, bidi
overrides that disguise an extension, absurd lengths) are refused outright."""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

from libs.common.errors import FieldViolation, VidsynthError

MAX_FILENAME_CHARS = 255
# Bidirectional embeddings, overrides and isolates can make "gpj.exe" read as "exe.jpg".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _refuse(reason: str) -> VidsynthError:
    return VidsynthError(
        "INVALID_FILENAME", f"The file name {reason}.", [FieldViolation("original_filename", reason)]
    )


def check_filename(name: str) -> str:
    """Returns the name when acceptable (an empty name is: raw uploads have none)."""
    if len(name) > MAX_FILENAME_CHARS:
        raise _refuse(f"is longer than {MAX_FILENAME_CHARS} characters")
    if any(ch in _BIDI_CONTROLS for ch in name):
        raise _refuse("contains text-direction control characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise _refuse("contains control characters")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise _refuse("must not contain a path")
    return name


def extension_of(name: str) -> str:
    """Lower-case extension with its dot, or "" when the name has none."""
    return PurePosixPath(name).suffix.lower() if name else ""
