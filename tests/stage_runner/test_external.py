"""External model commands: argv templates, progress parsing, timeout, crash, garbage,
cancel by process group; and jobs failing through them leave output/ empty."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from libs.common.errors import VidsynthError
from libs.common.session_paths import session_paths
from services.stage_runner.backends.base import StageInput
from services.stage_runner.backends.external import ExternalBackend
from services.stage_runner.config import ExternalBackendConfig, load_backends_file
from services.stage_runner.detection import Detection
from services.stage_runner.external import PercentParser, render_template
from services.stage_runner.job_view import error_code_of
from tests.stage_runner.fake_commands import backends_toml, write_fake_command
from vidsynth.v1 import common_pb2, session_pb2, stage_runner_pb2


def fake_backend(tmp_path: Path, behaviour: str, source: Path, timeout: float = 30.0) -> ExternalBackend:
    script = write_fake_command(tmp_path)
    config = ExternalBackendConfig(
        name="fake-xtts",
        stage="voice",
        interpreter=sys.executable,
        argv=[str(script), behaviour, str(source), "{out}", "--text", "{text}"],
        output="{work_dir}/voice.wav",
        output_format="wav",
        timeout_seconds=timeout,
    )
    return ExternalBackend(config, Detection(), "conda")


async def stage_input(tmp_path: Path, progress: list[float]) -> StageInput:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    script = work / "script.txt"
    script.write_text("Hello; rm -rf / && $(reboot) `id`")

    async def on_progress(percent: float, message: str) -> None:
        progress.append(percent)

    return StageInput(
        job_id="job_x",
        session_id="ses_x",
        stage=common_pb2.STAGE_VOICE,
        work_dir=work,
        inputs={"script": script},
        spec=stage_runner_pb2.JobSpec(script_text="hi"),
        on_progress=on_progress,
    )


async def test_ok_command_reports_progress_and_output(tmp_path, media_dir):
    progress: list[float] = []
    backend = fake_backend(tmp_path, "ok", media_dir / "voice.wav")
    outputs = await backend.run(await stage_input(tmp_path, progress))
    assert outputs["audio"].read_bytes() == (media_dir / "voice.wav").read_bytes()
    assert progress == sorted(progress) and progress[0] >= 25 and progress[-1] == 99.0


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [("crash", "STAGE_FAILED"), ("garbage", "STAGE_OUTPUT_INVALID"), ("hang", "STAGE_TIMEOUT")],
)
async def test_failing_commands_raise_their_codes(tmp_path, media_dir, behaviour, code):
    backend = fake_backend(tmp_path, behaviour, media_dir / "voice.wav", timeout=1.0)
    with pytest.raises(VidsynthError) as caught:
        await backend.run(await stage_input(tmp_path, []))
    assert caught.value.code == code


def pids_alive(pid_file: Path) -> list[int]:
    alive = []
    for pid in map(int, pid_file.read_text().split()):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


async def test_cancel_kills_the_whole_process_group_quickly(tmp_path, media_dir):
    backend = fake_backend(tmp_path, "spawn_and_hang", media_dir / "voice.wav")
    task = asyncio.create_task(backend.run(await stage_input(tmp_path, [])))
    pid_file = tmp_path / "work" / "voice.wav.pids"
    for _ in range(200):
        if pid_file.exists() and len(pid_file.read_text().split()) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(pids_alive(pid_file)) == 2
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began < 2.0
    for _ in range(40):  # reaping of the grandchild by init may lag a moment
        if not pids_alive(pid_file):
            break
        await asyncio.sleep(0.05)
    assert pids_alive(pid_file) == []


def test_percent_parser_spreads_over_bars():
    parser = PercentParser(bars=2)
    assert parser.feed(b"Face Renderer:  50%|#####     | 5/10") == 25.0
    assert parser.feed(b"no percentage here") is None
    assert parser.feed(b" 100%|##########| 10/10") == 50.0
    assert parser.feed(b"seamlessClone:  10%|#         | 1/10") == 55.0
    assert parser.feed(b"seamlessClone:  10%|#         | 1/10") is None
    assert parser.feed(b" 100%|##########|") == 99.0


def test_templates_fill_known_placeholders_only():
    assert render_template("{work_dir}/out.wav", {"work_dir": "/w"}) == "/w/out.wav"
    assert render_template("--text={text}", {"text": "{face} $(id)"}) == "--text={face} $(id)"
    # Only plain names are placeholders: no attribute access, nothing evaluated.
    assert render_template("{face.__class__}", {"face": "x"}) == "{face.__class__}"
    with pytest.raises(VidsynthError):
        render_template("{unknown}", {})


def test_shipped_backends_file_has_the_real_commands():
    backends = {b.name: b for b in load_backends_file(Path("services/stage_runner/backends.toml")).backends}
    assert backends["xtts"].conda_env == "xtts_voice_cloning" and "xtts_v2" in " ".join(backends["xtts"].argv)
    sadtalker = " ".join(backends["sadtalker"].argv)
    for flag in (
        "inference.py",
        "--source_image",
        "--driven_audio",
        "--result_dir",
        "--size",
        "--preprocess",
        "--expression_scale",
    ):
        assert flag in sadtalker
    assert "inference_realesrgan_video.py" in backends["realesrgan"].argv


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [("crash", "STAGE_FAILED"), ("garbage", "STAGE_OUTPUT_INVALID"), ("hang", "STAGE_TIMEOUT")],
)
async def test_job_through_a_failing_external_backend(start_mesh, tmp_path, media_dir, behaviour, code):
    backends_file = backends_toml(tmp_path, behaviour, media_dir / "voice.wav", timeout=1.0)
    mesh = await start_mesh(mode="auto", stage_runner_backends_file=backends_file)
    session_id = await mesh.ready_session()
    job = await mesh.start(session_id)
    failed = await mesh.wait_done(job.job_id)
    assert failed.state == common_pb2.JOB_STATE_FAILED
    assert error_code_of(failed) == code
    voice = next(s for s in failed.stages if s.stage == common_pb2.STAGE_VOICE)
    assert voice.backend == "fake-xtts" and voice.status == common_pb2.STAGE_STATUS_FAILED
    paths = session_paths(mesh.settings.sessions_dir, session_id)
    assert list(paths.output.iterdir()) == []
    assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_FAILED
