"""A full disk in the job path (stage outputs, checkpoints, moving outputs into place, the
job store) is INSUFFICIENT_STORAGE (507, Retry-After), never a crash or a stuck job.

Python writes fail with ENOSPC/EDQUOT and SQLite with SQLITE_FULL: those say so directly.
A child process (ffmpeg, an external model) only exits non-zero, so a stage that failed
while its file system had almost no room left is taken to have run out of it.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from libs.common.errors import VidsynthError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Less room than this when a stage failed: the stage ran out of disk.
NEARLY_FULL_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = 60.0
# Failures a child that could not write its output reports.
CHILD_FAILURE_CODES = frozenset({"STAGE_FAILED", "STAGE_OUTPUT_INVALID"})


def insufficient_storage() -> VidsynthError:
    return VidsynthError(
        "INSUFFICIENT_STORAGE",
        "The server ran out of disk space while making this video; try again later.",
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )


def says_disk_full(error: BaseException | None) -> bool:
    """ENOSPC/EDQUOT or SQLITE_FULL, on `error` or anything it was raised from."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return True
        if (
            isinstance(error, sqlite3.Error)
            and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        ):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def nearly_full(path: Path) -> bool:
    """Blocking. The file system holding `path` (or its nearest existing parent) has almost no room."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(candidate).free < NEARLY_FULL_BYTES
    return False


def ran_out_of_space(error: BaseException, work_dir: Path) -> bool:
    """Blocking. Whether `error`, raised while writing under `work_dir`, is a full disk."""
    if says_disk_full(error):
        return True
    child_failed = isinstance(error, VidsynthError) and error.code in CHILD_FAILURE_CODES
    return child_failed and nearly_full(work_dir)


@contextlib.contextmanager
def disk_full_as_insufficient_storage() -> Iterator[None]:
    """For writes whose errors say what they are (Python files, SQLite)."""
    try:
        yield
    except (OSError, sqlite3.Error) as error:
        if says_disk_full(error):
            raise insufficient_storage() from error
        raise
