"""Auto mode with no model envs installed: the built-in backends (Piper voice, face mesh crop,
viseme animation, ffmpeg assembly) run a real job end to end."""

from __future__ import annotations

from pathlib import Path

from libs.common.session_paths import session_paths
from services.stage_runner.media.ffmpeg import probe
from vidsynth.v1 import common_pb2

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


async def test_auto_mode_runs_the_builtin_backends(start_mesh, tmp_path):
    mesh = await start_mesh(mode="auto")
    session_id = await mesh.ready_session(face=SAMPLES / "portrait.jpg", voice=SAMPLES / "voice.wav")
    job = await mesh.start(session_id, text="Hello. This video was made by the built-in backends.")
    done = await mesh.wait_done(job.job_id, limit=120)
    assert done.state == common_pb2.JOB_STATE_COMPLETED, done.error
    backends = {s.stage: s.backend for s in done.stages}
    assert backends == {
        common_pb2.STAGE_SCRIPT: "user-script",
        common_pb2.STAGE_VOICE: "piper",
        common_pb2.STAGE_FACE: "face-mesh",
        common_pb2.STAGE_ANIMATE: "builtin-animate",
        common_pb2.STAGE_ASSEMBLE: "ffmpeg-assemble",
    }
    video = session_paths(mesh.settings.sessions_dir, session_id).output / job.job_id / "video.mp4"
    info = await probe(video)
    assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
    assert float(info["format"]["duration"]) > 2.0
