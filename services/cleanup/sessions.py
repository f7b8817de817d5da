"""Which session directories the cleanup may touch.

The rule is fail-safe: only a session SessionService positively reports as not
processing is IDLE; anything it cannot vouch for (unreachable, any error) is UNKNOWN
and left alone. ABSENT (a directory with no session at all) comes only from the
owner-agnostic lookup.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Protocol

import grpc
import structlog

from libs.common import ids
from libs.common.clients import MeshClients
from libs.common.rpc_status import error_from_rpc_error
from vidsynth.internal.v1 import session_internal_pb2
from vidsynth.v1 import session_pb2

log = structlog.get_logger("vidsynth.cleanup.sessions")


class SessionStatus(enum.Enum):
    PROCESSING = "processing"
    IDLE = "idle"
    ABSENT = "absent"
    UNKNOWN = "unknown"

    @property
    def may_clean_files(self) -> bool:
        """Work files and outputs may go only for a session known not to be processing."""
        return self is SessionStatus.IDLE


class SessionStatusSource(Protocol):
    async def status(self, session_id: str) -> SessionStatus: ...


class MeshSessionStatusSource:
    """Asks SessionInternalService.BatchGetSessions (internal, owner-agnostic) with the mesh
    credential, so it can vouch for every user's sessions, and tell a directory whose
    session no longer exists (ABSENT) from one it could not check (UNKNOWN)."""

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients

    async def status(self, session_id: str) -> SessionStatus:
        try:
            reply = await self._clients.session_internal.BatchGetSessions(
                session_internal_pb2.BatchGetSessionsRequest(session_ids=[session_id])
            )
        except grpc.RpcError as rpc_error:
            log.warning("cleanup.session_lookup_failed", code=error_from_rpc_error(rpc_error).code)
            return SessionStatus.UNKNOWN
        if not reply.sessions:
            return SessionStatus.ABSENT
        if reply.sessions[0].state == session_pb2.SESSION_STATE_PROCESSING:
            return SessionStatus.PROCESSING
        return SessionStatus.IDLE


def session_dirs(sessions_dir: Path) -> list[tuple[str, Path, bool]]:
    """(name, path, is_valid_session_id) for every directory under sessions/ (blocking)."""
    try:
        with os.scandir(sessions_dir) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    # DirEntry answers from the listing itself: no extra stat per directory.
    for entry in entries:
        path = sessions_dir / entry.name
        if entry.is_dir(follow_symlinks=False):
            found.append((entry.name, path, ids.is_valid_id("session", entry.name)))
        elif entry.is_symlink() or entry.is_file():
            found.append((entry.name, path, False))
    return found
