"""Which session directories the cleanup may touch.

The rule is fail-safe: only a session SessionService positively reports as not
processing is IDLE; anything it cannot vouch for (unreachable, NOT_FOUND because the
lookup is owner-scoped, any error) is UNKNOWN and left alone. ABSENT (a directory
with no session at all) comes only from a source that can see every session.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Protocol

import grpc
import structlog

from libs.common import ids
from libs.common.clients import MeshClients
from libs.common.identity import current_identity
from libs.common.rpc_status import error_from_rpc_error
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
    """Asks SessionService.GetSession with the mesh credential (and the acting user, if any).

    GetSession is scoped to the owner, so a session of another user answers
    SESSION_NOT_FOUND; that is UNKNOWN here, never ABSENT. Scheduled runs act for no
    user, so they can vouch for no session until SessionService offers an
    owner-agnostic internal lookup.
    """

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients

    async def status(self, session_id: str) -> SessionStatus:
        if current_identity.get() is None:
            # GetSession needs an acting user; without one it cannot vouch for anything.
            return SessionStatus.UNKNOWN
        try:
            session = await self._clients.session.GetSession(
                session_pb2.GetSessionRequest(session_id=session_id)
            )
        except grpc.RpcError as rpc_error:
            error = error_from_rpc_error(rpc_error)
            if error.code == "SESSION_EXPIRED":
                return SessionStatus.IDLE  # expired sessions are never processing
            return SessionStatus.UNKNOWN
        if session.state == session_pb2.SESSION_STATE_PROCESSING:
            return SessionStatus.PROCESSING
        return SessionStatus.IDLE


def session_dirs(sessions_dir: Path) -> list[tuple[str, Path, bool]]:
    """(name, path, is_valid_session_id) for every directory under sessions/ (blocking)."""
    if not sessions_dir.is_dir():
        return []
    found = []
    for path in sorted(sessions_dir.iterdir()):
        if path.is_dir() and not path.is_symlink():
            found.append((path.name, path, ids.is_valid_id("session", path.name)))
        elif path.is_symlink() or path.is_file():
            found.append((path.name, path, False))
    return found
