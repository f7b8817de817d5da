"""The stage runner's view of SessionService: ownership and readiness checks, the
session's asset files, and moving the session through its states with the job."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from libs.common.clients import MeshClients
from libs.common.enums import enum_label
from libs.common.errors import VidsynthError
from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import session_paths
from vidsynth.internal.v1 import session_internal_pb2
from vidsynth.v1 import common_pb2, session_pb2

log = structlog.get_logger("vidsynth.stage_runner.session")

# States in which the session has both assets and no job running.
STARTABLE_STATES = (
    session_pb2.SESSION_STATE_READY,
    session_pb2.SESSION_STATE_COMPLETED,
    session_pb2.SESSION_STATE_FAILED,
)
STATE_UPDATE_ATTEMPTS = 5
STATE_UPDATE_FIRST_DELAY = 0.2


@dataclass(frozen=True)
class SessionInputs:
    face_image: Path
    voice_sample: Path
    face_megapixels: float


class SessionLink:
    def __init__(self, clients: MeshClients, sessions_dir: Path) -> None:
        self._clients = clients
        self._sessions_dir = sessions_dir

    async def get(self, session_id: str) -> session_pb2.Session:
        """The caller's session (identity propagates), or its catalogued error."""
        try:
            return await self._clients.session.GetSession(
                session_pb2.GetSessionRequest(session_id=session_id)
            )
        except grpc.RpcError as error:
            raise error_from_rpc_error(error) from None

    async def get_startable(self, session_id: str) -> session_pb2.Session:
        session = await self.get(session_id)
        if session.state not in STARTABLE_STATES or not self._has_assets(session):
            state = enum_label(session_pb2.SessionState, session.state)
            raise VidsynthError(
                "INVALID_SESSION_STATE",
                f"The session is {state}; it needs a face photo and a voice sample and no running job.",
            )
        return session

    @staticmethod
    def _has_assets(session: session_pb2.Session) -> bool:
        kinds = {a.kind for a in session.assets}
        return {common_pb2.ASSET_KIND_FACE_IMAGE, common_pb2.ASSET_KIND_VOICE_AUDIO} <= kinds

    def inputs(self, session: session_pb2.Session) -> SessionInputs:
        """Paths of the session's face and voice assets (generated names, checked)."""
        assets_dir = session_paths(self._sessions_dir, session.session_id).assets
        found: dict[int, common_pb2.Asset] = {a.kind: a for a in session.assets}
        try:
            face = found[common_pb2.ASSET_KIND_FACE_IMAGE]
            voice = found[common_pb2.ASSET_KIND_VOICE_AUDIO]
        except KeyError:
            raise VidsynthError(
                "INVALID_SESSION_STATE", "The session lacks its face or voice asset."
            ) from None
        for asset in (face, voice):
            if not asset.stored_name or Path(asset.stored_name).name != asset.stored_name:
                raise VidsynthError("INVALID_SESSION_STATE", "A session asset has an unusable file name.")
        megapixels = face.report.width * face.report.height / 1e6
        return SessionInputs(assets_dir / face.stored_name, assets_dir / voice.stored_name, megapixels)

    async def set_state(self, session_id: str, state: int, job_id: str) -> None:
        """Moves the session, raising the catalogued error (used where the caller must know)."""
        try:
            await self._clients.session_internal.UpdateSessionState(
                session_internal_pb2.UpdateSessionStateRequest(
                    session_id=session_id, state=state, job_id=job_id
                )
            )
        except grpc.RpcError as error:
            raise error_from_rpc_error(error) from None

    async def follow_job(self, session_id: str, state: int, job_id: str) -> None:
        """Best effort with retries: a job's end must not be lost to a brief outage."""
        delay = STATE_UPDATE_FIRST_DELAY
        for attempt in range(1, STATE_UPDATE_ATTEMPTS + 1):
            try:
                await self.set_state(session_id, state, job_id)
                return
            except VidsynthError as error:
                retryable = error.code in ("SERVICE_UNAVAILABLE", "DEADLINE_EXCEEDED")
                log.warning("session.state_update_failed", code=error.code, attempt=attempt, state=state)
                if not retryable or attempt == STATE_UPDATE_ATTEMPTS:
                    return
            await asyncio.sleep(delay)
            delay *= 2
