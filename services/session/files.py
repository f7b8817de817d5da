"""A session's isolation directory: made with the session, removed with it.

Blocking file-system work; the async wrappers run it on a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import structlog

from libs.common.session_paths import session_paths

log = structlog.get_logger("vidsynth.session.files")


def _tree_size(root: Path) -> int:
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except FileNotFoundError:
                continue
    return total


def _remove_tree(root: Path) -> int:
    if not root.exists():
        return 0
    size = _tree_size(root)
    shutil.rmtree(root, ignore_errors=True)
    return size


def _remove_file(path: Path) -> None:
    path.unlink(missing_ok=True)


def _trees_sizes(roots: list[Path]) -> list[int]:
    return [_tree_size(root) for root in roots]


async def disk_used(sessions_dir: Path, session_ids: list[str]) -> list[int]:
    """Bytes of the files in each session's directory (0 when it has none), one walk per
    session, all on one worker thread."""
    roots = [session_paths(sessions_dir, session_id).root for session_id in session_ids]
    return await asyncio.to_thread(_trees_sizes, roots)


async def create_session_dirs(sessions_dir: Path, session_id: str) -> None:
    """`sessions/<id>/{assets,work,output}`, mode 0700."""
    await asyncio.to_thread(session_paths(sessions_dir, session_id).create)


async def remove_session_dirs(sessions_dir: Path, session_id: str) -> int:
    """Removes the session's directory; returns the bytes it held."""
    freed = await asyncio.to_thread(_remove_tree, session_paths(sessions_dir, session_id).root)
    log.info("session.dirs_removed", session_id=session_id, bytes_freed=freed)
    return freed


async def remove_asset_file(sessions_dir: Path, session_id: str, stored_name: str) -> None:
    """Removes a replaced asset's file (its name was checked when it was registered)."""
    await asyncio.to_thread(_remove_file, session_paths(sessions_dir, session_id).assets / stored_name)
