"""Fixtures for the stage runner tests: real session and progress services in-process,
the stage runner with test settings, ready sessions with real media assets."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

import services.progress.server
import services.session.server
import services.stage_runner.server
from libs.common import ids
from libs.common.session_paths import session_paths
from libs.common.settings import MeshSettings
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.media.config import MediaSettings
from services.stage_runner.server import StageRunnerWiring
from tests.support.identities import mesh_metadata, user_metadata
from vidsynth.internal.v1 import session_internal_pb2, session_internal_pb2_grpc
from vidsynth.v1 import (
    common_pb2,
    progress_pb2,
    progress_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    stage_runner_pb2,
    stage_runner_pb2_grpc,
)

TERMINAL = (common_pb2.JOB_STATE_COMPLETED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED)
WAIT_SECONDS = 60.0


def make_media(directory: Path) -> tuple[Path, Path]:
    """A 320x320 PNG and a 1 s 16 kHz WAV made by ffmpeg (valid media, not faces)."""
    face = directory / "face.png"
    voice = directory / "voice.wav"
    if not face.exists():
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x320:rate=1",
                "-frames:v",
                "1",
                str(face),
            ],
            check=True,
        )
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=200:duration=1:sample_rate=16000",
                str(voice),
            ],
            check=True,
        )
    return face, voice


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("stage_runner_media")
    make_media(directory)
    return directory


@dataclass
class RunnerMesh:
    settings: MeshSettings
    session_address: str
    progress_address: str
    runner_address: str
    media_dir: Path
    wiring: StageRunnerWiring | None = None
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address)
        self._channels.append(channel)
        return channel

    @property
    def runner(self) -> stage_runner_pb2_grpc.StageRunnerServiceStub:
        return stage_runner_pb2_grpc.StageRunnerServiceStub(self._channel(self.runner_address))

    @property
    def sessions(self) -> session_pb2_grpc.SessionServiceStub:
        return session_pb2_grpc.SessionServiceStub(self._channel(self.session_address))

    @property
    def session_internal(self) -> session_internal_pb2_grpc.SessionInternalServiceStub:
        return session_internal_pb2_grpc.SessionInternalServiceStub(self._channel(self.session_address))

    @property
    def progress(self) -> progress_pb2_grpc.ProgressServiceStub:
        return progress_pb2_grpc.ProgressServiceStub(self._channel(self.progress_address))

    async def new_session(self, user: str = "alice") -> str:
        session = await self.sessions.CreateSession(
            session_pb2.CreateSessionRequest(display_name="runner test"),
            metadata=user_metadata(user),
            timeout=10,
        )
        return session.session_id

    async def ready_session(
        self, user: str = "alice", face: Path | None = None, voice: Path | None = None
    ) -> str:
        """A session with a face photo and a voice sample registered (state READY)."""
        session_id = await self.new_session(user)
        assets_dir = session_paths(self.settings.sessions_dir, session_id).assets
        face = face or self.media_dir / "face.png"
        for kind, source, content_type in (
            (common_pb2.ASSET_KIND_FACE_IMAGE, face, "image/jpeg" if face.suffix == ".jpg" else "image/png"),
            (common_pb2.ASSET_KIND_VOICE_AUDIO, voice or self.media_dir / "voice.wav", "audio/wav"),
        ):
            stored_name = f"{ids.new_id('asset')}{source.suffix}"
            await asyncio.to_thread(shutil.copyfile, source, assets_dir / stored_name)
            asset = common_pb2.Asset(
                asset_id=ids.new_id("asset"),
                kind=kind,
                stored_name=stored_name,
                content_type=content_type,
                sha256="0" * 64,
                size_bytes=source.stat().st_size,
                report=common_pb2.ValidationReport(accepted=True, kind=kind, width=320, height=320),
            )
            await self.session_internal.RegisterAsset(
                session_internal_pb2.RegisterAssetRequest(session_id=session_id, asset=asset),
                metadata=mesh_metadata(user),
                timeout=10,
            )
        return session_id

    async def session_state(self, session_id: str, user: str = "alice") -> int:
        session = await self.sessions.GetSession(
            session_pb2.GetSessionRequest(session_id=session_id), metadata=user_metadata(user), timeout=10
        )
        return session.state

    async def start(
        self,
        session_id: str,
        text: str = "Hello there, this is a test.",
        user: str = "alice",
        request_id: str = "",
        **spec_fields,
    ) -> stage_runner_pb2.Job:
        spec = stage_runner_pb2.JobSpec(script_text=text, **spec_fields)
        return await self.runner.StartJob(
            stage_runner_pb2.StartJobRequest(session_id=session_id, spec=spec, request_id=request_id),
            metadata=user_metadata(user),
            timeout=30,
        )

    async def get(self, job_id: str, user: str = "alice") -> stage_runner_pb2.Job:
        return await self.runner.GetJob(
            stage_runner_pb2.GetJobRequest(job_id=job_id), metadata=user_metadata(user), timeout=10
        )

    async def wait_done(
        self, job_id: str, user: str = "alice", limit: float = WAIT_SECONDS
    ) -> stage_runner_pb2.Job:
        return await self.wait_for(job_id, lambda job: job.state in TERMINAL, user, limit)

    async def wait_for(
        self,
        job_id: str,
        condition: Callable[[stage_runner_pb2.Job], bool],
        user: str = "alice",
        limit: float = WAIT_SECONDS,
    ) -> stage_runner_pb2.Job:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            job = await self.get(job_id, user)
            if condition(job):
                return job
            if loop.time() > deadline:
                raise AssertionError(f"job {job_id} stuck in {job}")
            await asyncio.sleep(0.05)

    async def events(
        self, session_id: str, job_id: str = "", user: str = "alice"
    ) -> list[progress_pb2.ProgressEvent]:
        """Every event of the session (or job) up to its terminal one."""
        call = self.progress.Subscribe(
            progress_pb2.SubscribeRequest(
                session_id=session_id, after_seq=0, until_terminal=True, job_id=job_id
            ),
            metadata=user_metadata(user),
            timeout=WAIT_SECONDS,
        )
        return [event async for event in call]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


StartMesh = Callable[..., Awaitable[RunnerMesh]]


def runner_settings(**overrides) -> StageRunnerSettings:
    values = {"stage_runner_simulation_seconds": 0.1, **overrides}
    return StageRunnerSettings(**values)


@pytest.fixture
async def start_mesh(in_process_mesh, media_dir) -> StartMesh:
    """Starts session + progress + stage runner; `mode` and StageRunnerSettings overrides apply."""
    meshes: list[RunnerMesh] = []

    async def start(mode: str = "simulation", **overrides) -> RunnerMesh:
        session = await in_process_mesh.start("session", services.session.server.build)
        progress = await in_process_mesh.start("progress", services.progress.server.build)
        in_process_mesh.settings = in_process_mesh.settings.model_copy(update={"processing_mode": mode})
        settings = runner_settings(**overrides)

        async def build(mesh_settings: MeshSettings):
            return await services.stage_runner.server.build(
                mesh_settings, settings, MediaSettings(media_gemini_api_key="")
            )

        runner = await in_process_mesh.start("stage_runner", build)
        mesh = RunnerMesh(
            in_process_mesh.settings,
            session.address,
            progress.address,
            runner.address,
            media_dir,
            runner.wiring,
        )
        meshes.append(mesh)
        return mesh

    yield start
    for mesh in meshes:
        await mesh.close()
