"""The speech worker's life (kept, restarted, ended) and the fallbacks around it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from libs.common import children
from services.stage_runner.backends.base import StageInput
from services.stage_runner.backends.builtin import BuiltinBackend
from services.stage_runner.detection import Detection
from services.stage_runner.media import face_mesh
from services.stage_runner.media.config import MediaSettings
from services.stage_runner.media.neural_voice import synthesize_matched
from services.stage_runner.media.speech_engine import SpeechEngine
from services.stage_runner.media.worker_process import WorkerFailed, WorkerProcess
from vidsynth.v1 import common_pb2, stage_runner_pb2

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "voice.wav"
PORTRAIT = ROOT / "samples" / "portrait.jpg"


def test_the_stage_runner_never_imports_the_gpl_speech_packages():
    probe = (
        "import sys, services.stage_runner.server, services.stage_runner.backends.builtin, "
        "services.stage_runner.media.neural_voice; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('piper', 'parselmouth')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


async def test_a_killed_worker_fails_one_call_and_the_next_call_starts_a_new_one(tmp_path):
    engine = SpeechEngine()
    try:
        await engine.reference(tmp_path)
        first = engine.worker.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WorkerFailed):
            await engine.speak("Hello there.", tmp_path / "a.wav", 1.0)
        spoken = await engine.speak("Hello there.", tmp_path / "b.wav", 1.0)
        assert spoken.samples > 0 and engine.worker.starts == 2 and engine.worker.pid != first
    finally:
        await engine.close()
    assert engine.worker.pid is None and not children.live_children()


async def test_cancelling_a_call_ends_the_worker(tmp_path):
    engine = SpeechEngine()
    try:
        await engine.reference(tmp_path)
        pid = engine.worker.pid
        task = asyncio.create_task(engine.speak("A long sentence to speak. " * 30, tmp_path / "c.wav", 1.0))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.worker.pid is None and pid not in children.live_children()
    finally:
        await engine.close()


async def test_a_worker_that_answers_garbage_or_hangs_is_ended(tmp_path):
    garbage = WorkerProcess("this_module_does_not_exist_anywhere", "broken")
    with pytest.raises(WorkerFailed):
        await garbage.call({"op": "hello"}, time_limit=30)
    assert garbage.pid is None
    hang = WorkerProcess("tests.media.hang_worker", "hang")  # reads the request, never answers
    with pytest.raises(WorkerFailed, match="ran past"):
        await hang.call({"op": "hello"}, time_limit=1.0)
    assert hang.pid is None and not children.live_children()


async def test_when_piper_fails_espeak_speaks_and_says_so(tmp_path):
    engine = SpeechEngine()
    engine.worker = WorkerProcess("this_module_does_not_exist_anywhere", "speech")
    speech = await synthesize_matched(
        "Hello there. This still gets said.", SAMPLE, tmp_path / "s.wav", engine
    )
    assert speech.engine == "espeak-ng" and speech.alignment.source == "estimate"
    assert "Piper failed; espeak-ng speaks instead" in speech.messages
    assert [w.text for w in speech.alignment.words] == ["Hello", "there.", "This", "still", "gets", "said."]


async def test_an_unspeakable_script_fails_the_voice_with_its_code(tmp_path):
    with pytest.raises(Exception) as refused:
        await synthesize_matched("\u4f60\u597d\u3002", SAMPLE, tmp_path / "x.wav", None)
    assert getattr(refused.value, "code", "") == "SCRIPT_NOT_SPEAKABLE"


async def test_without_the_face_mesh_the_face_stage_falls_back_to_opencv_and_says_so(tmp_path, monkeypatch):
    def unavailable(_image):
        raise face_mesh.FaceMeshUnavailable("mediapipe is not installed")

    monkeypatch.setattr(face_mesh, "landmarks", unavailable)
    messages: list[str] = []

    async def on_progress(percent: float, message: str) -> None:
        messages.append(message)

    backend = BuiltinBackend("face-mesh", Detection(), MediaSettings(), SpeechEngine())
    spec = stage_runner_pb2.JobSpec(script_text="Hi.")
    outputs = await backend.run(
        StageInput(
            "job", "session", common_pb2.STAGE_FACE, tmp_path, {"face_image": PORTRAIT}, spec, on_progress
        )
    )
    assert set(outputs) == {"face"}  # no landmarks: the animate stage uses the OpenCV rig
    assert any("OpenCV cascade found the face instead" in m and "unavailable" in m for m in messages), (
        messages
    )
    assert any("512x512" in m for m in messages)
