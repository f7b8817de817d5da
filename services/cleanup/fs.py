"""Blocking filesystem primitives of the cleanup tasks (call them through asyncio.to_thread).

Nothing here follows symlinks: a link is removed as a link, never its target.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    path: Path
    size_bytes: int
    # Newest modification time anywhere inside (a dir with one fresh file is fresh).
    newest_mtime: float


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _walk_figures(path: Path, st: os.stat_result) -> tuple[int, float]:
    """Size and newest mtime of `path`, whose own lstat is `st`."""
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size, st.st_mtime
    size, newest = 0, st.st_mtime
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in dirnames + filenames:
            try:
                child = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            newest = max(newest, child.st_mtime)
            if not stat.S_ISDIR(child.st_mode):
                size += child.st_size
    return size, newest


def describe(path: Path) -> Entry:
    st = _lstat(path)
    size, newest = _walk_figures(path, st) if st else (0, 0.0)
    return Entry(path, size, newest)


def children(directory: Path, skip: frozenset[str] = frozenset()) -> list[Entry]:
    """Direct children of `directory` with their sizes, but for the names in `skip`
    (never walked); empty when it does not exist."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [describe(directory / name) for name in names if name not in skip]


def older_than(entries: list[Entry], max_age_seconds: float, now: float) -> list[Entry]:
    return [e for e in entries if now - e.newest_mtime >= max_age_seconds]


def remove(path: Path) -> int:
    """Removes a file, link or tree; returns the bytes it held (0 if already gone)."""
    st = _lstat(path)
    if st is None:
        return 0
    size, _ = _walk_figures(path, st)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return size if not path.exists() else 0


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free
