"""Domain modules on their own: cost model learning and persistence, detection parsing,
backend selection per mode, job spec checks, checkpoints, settings."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from libs.common.errors import VidsynthError
from services.stage_runner import checkpoints
from services.stage_runner.backends.external import ExternalBackend
from services.stage_runner.backends.script import UserScriptBackend
from services.stage_runner.backends.simulation import SimulationBackend
from services.stage_runner.capabilities import BackendRegistry
from services.stage_runner.config import ExternalBackendConfig, StageRunnerSettings
from services.stage_runner.cost_model import CostModel, work_units
from services.stage_runner.detection import Detection, conda_env_names
from services.stage_runner.spec_checks import check_spec, request_fingerprint
from services.stage_runner.store import SqliteJobStore
from vidsynth.v1 import common_pb2, stage_runner_pb2

S = common_pb2


async def test_cost_model_learns_from_runs_and_persists(tmp_path):
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    model = CostModel(store, simulation_seconds=0.1)
    await model.load()
    default = model.estimate("sadtalker", stage_runner_pb2.BACKEND_KIND_EXTERNAL, S.STAGE_ANIMATE, 10)
    assert default == pytest.approx(100.0)  # 10 s/s of speech before anything was measured
    await model.record("sadtalker", S.STAGE_ANIMATE, units=10, seconds=40)
    assert model.estimate("sadtalker", stage_runner_pb2.BACKEND_KIND_EXTERNAL, S.STAGE_ANIMATE, 10) == 40
    await model.record("sadtalker", S.STAGE_ANIMATE, units=10, seconds=60)
    learned = model.estimate("sadtalker", stage_runner_pb2.BACKEND_KIND_EXTERNAL, S.STAGE_ANIMATE, 10)
    assert 40 < learned < 60
    await store.close()

    reopened = CostModel(SqliteJobStore(tmp_path / "jobs.sqlite3"), simulation_seconds=0.1)
    await reopened.load()
    assert (
        reopened.estimate("sadtalker", stage_runner_pb2.BACKEND_KIND_EXTERNAL, S.STAGE_ANIMATE, 10) == learned
    )


async def test_a_cost_rate_that_cannot_be_saved_is_still_learned_and_fails_nothing(tmp_path):
    class RedisGone(SqliteJobStore):
        async def save_cost_rate(self, rate) -> None:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    store = RedisGone(tmp_path / "jobs.sqlite3")
    model = CostModel(store, simulation_seconds=0.1)
    await model.load()
    await model.record("sadtalker", S.STAGE_ANIMATE, units=10, seconds=40)  # does not raise
    assert model.estimate("sadtalker", stage_runner_pb2.BACKEND_KIND_EXTERNAL, S.STAGE_ANIMATE, 10) == 40
    await store.close()


def test_work_units_scale_with_the_job():
    spec = stage_runner_pb2.JobSpec(options=stage_runner_pb2.JobOptions(size=512, upscale_factor=2))
    assert work_units(S.STAGE_VOICE, 30, 0.2, spec) == 30
    assert work_units(S.STAGE_ANIMATE, 30, 0.2, spec) == 120  # (512/256)^2 x 30 s
    assert work_units(S.STAGE_ENHANCE, 10, 0.2, spec) == pytest.approx(10 * 1024 * 1024 / 1e6)
    assert work_units(S.STAGE_FACE, 30, 0.25, spec) == 0.25


def test_conda_env_list_parsing():
    listing = '{"envs": ["/opt/conda", "/opt/conda/envs/sadtalker", "/home/u/envs/xtts_voice_cloning"]}'
    assert conda_env_names(listing) == {"base", "sadtalker", "xtts_voice_cloning"}
    assert conda_env_names("not json") == frozenset()


def registry(detection: Detection, mode: int) -> BackendRegistry:
    sadtalker = ExternalBackend(
        ExternalBackendConfig(
            name="sadtalker",
            stage="animate",
            argv=["python", "inference.py"],
            conda_env="sadtalker",
            output_glob="*.mp4",
            install_hint="conda create -n sadtalker",
        ),
        detection,
        "conda",
    )
    simulated = [
        SimulationBackend(stage, 0.1, 150) for stage in (S.STAGE_ANIMATE, S.STAGE_VOICE, S.STAGE_SCRIPT)
    ]

    async def redetect() -> Detection:
        return detection

    return BackendRegistry([UserScriptBackend(), sadtalker, *simulated], detection, redetect, mode)


def test_selection_per_mode():
    missing = Detection(conda_path="/usr/bin/conda", conda_envs=frozenset({"base"}))
    auto = registry(missing, S.PROCESSING_MODE_AUTO)
    assert auto.select(S.STAGE_ANIMATE, S.PROCESSING_MODE_AUTO).name == "simulated-animate"
    with pytest.raises(VidsynthError) as caught:
        auto.select(S.STAGE_ANIMATE, S.PROCESSING_MODE_PRODUCTION)
    assert caught.value.code == "STAGE_UNAVAILABLE"
    assert (
        "conda env sadtalker not found" in caught.value.message
        and "conda create -n sadtalker" in caught.value.message
    )

    present = Detection(conda_path="/usr/bin/conda", conda_envs=frozenset({"sadtalker"}), gpu_name="Test GPU")
    found = registry(present, S.PROCESSING_MODE_AUTO)
    assert found.select(S.STAGE_ANIMATE, S.PROCESSING_MODE_AUTO).name == "sadtalker"
    assert found.select(S.STAGE_ANIMATE, S.PROCESSING_MODE_PRODUCTION).name == "sadtalker"
    assert found.select(S.STAGE_ANIMATE, S.PROCESSING_MODE_SIMULATION).name == "simulated-animate"
    with_text = stage_runner_pb2.JobSpec(script_text="hi")
    assert found.select(S.STAGE_SCRIPT, S.PROCESSING_MODE_PRODUCTION, with_text).name == "user-script"
    caps = found.capabilities()
    assert caps.gpu_available and caps.gpu_name == "Test GPU"
    assert {b.name: b.available for b in caps.backends}["sadtalker"]


async def test_detection_refresh_reaches_every_backend():
    detection = Detection()
    fresh = Detection(conda_path="/usr/bin/conda", conda_envs=frozenset({"sadtalker"}))

    async def redetect() -> Detection:
        return fresh

    reg = registry(detection, S.PROCESSING_MODE_AUTO)
    reg._redetect = redetect
    assert not reg.production_available(S.STAGE_ANIMATE)
    await reg.refresh()
    assert reg.production_available(S.STAGE_ANIMATE)


def test_fingerprint_tracks_session_and_spec():
    spec = stage_runner_pb2.JobSpec(script_text="hi", tone="warm")
    same = stage_runner_pb2.JobSpec(tone="warm", script_text="hi")
    assert request_fingerprint("ses_a", spec) == request_fingerprint("ses_a", same)
    assert request_fingerprint("ses_b", spec) != request_fingerprint("ses_a", spec)
    check_spec(spec, 100)
    with pytest.raises(VidsynthError) as caught:
        check_spec(
            stage_runner_pb2.JobSpec(script_text="hi", options=stage_runner_pb2.JobOptions(fps=120)), 100
        )
    assert caught.value.field_violations[0].field == "spec.options.fps"


def test_checkpoints_need_intact_outputs(tmp_path):
    stage_dir = tmp_path / "voice"
    checkpoints.reset_dir(stage_dir)
    audio = stage_dir / "voice.wav"
    audio.write_bytes(b"RIFF....")
    checkpoints.write_checkpoint(
        stage_dir,
        checkpoints.StageCheckpoint("voice", "espeak-ng", {"audio": audio}, {"speech_seconds": 2.0}),
    )
    restored = checkpoints.read_checkpoint(stage_dir)
    assert restored is not None and restored.outputs["audio"] == audio.resolve()
    assert restored.facts == {"speech_seconds": 2.0}
    audio.write_bytes(b"RIFF")  # truncated by a crash: not a checkpoint any more
    assert checkpoints.read_checkpoint(stage_dir) is None


def test_published_outputs_appear_at_once(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "video.mp4").write_bytes(b"video")
    (work / "script.txt").write_text("words")
    output = tmp_path / "output"
    output.mkdir()
    published = checkpoints.publish_outputs(
        {"video": work / "video.mp4", "script": work / "script.txt"}, output, "job_1"
    )
    assert sorted(p.name for p in output.iterdir()) == ["job_1"]
    assert {p.name: p.size_bytes for p in published} == {"video": 5, "script": 5}
    # Publishing again (a restart after the rename) finds the finished dir and changes nothing.
    assert (
        checkpoints.publish_outputs({"video": work / "video.mp4"}, output, "job_1")[0].sha256
        == published[0].sha256
    )


def test_stage_limits_setting():
    settings = StageRunnerSettings(stage_runner_stage_limits="animate=1, enhance=2")
    assert settings.stage_limits == {"animate": 1, "enhance": 2}
    with pytest.raises(ValueError):
        _ = StageRunnerSettings(stage_runner_stage_limits="gpu=1").stage_limits


async def test_processing_mode_survives_restarts_until_the_setting_changes(tmp_path):
    from services.stage_runner.capabilities import initial_mode, remember_mode

    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    assert await initial_mode(store, "auto") == S.PROCESSING_MODE_AUTO
    await remember_mode(store, S.PROCESSING_MODE_PRODUCTION, "auto")
    assert await initial_mode(store, "auto") == S.PROCESSING_MODE_PRODUCTION
    assert await initial_mode(store, "simulation") == S.PROCESSING_MODE_SIMULATION
    await store.close()
