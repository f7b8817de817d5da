from __future__ import annotations

import asyncio

import psutil
import pytest

from libs.common.errors import VidsynthError
from services.stage_runner.media.ffmpeg import decode_audio, duration_of, probe, run_ffmpeg, stream_of


async def test_run_ffmpeg_reports_rising_progress_up_to_100(tmp_path):
    out = tmp_path / "tone.wav"
    seen: list[float] = []

    async def on_progress(percent: float, message: str) -> None:
        seen.append(percent)

    await run_ffmpeg(
        ["-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "pcm_s16le", out],
        expected_seconds=3.0,
        on_progress=on_progress,
    )
    assert seen[-1] == 100.0
    assert seen == sorted(seen)
    info = await probe(out)
    assert stream_of(info, "audio")["codec_name"] == "pcm_s16le"
    assert duration_of(info) == pytest.approx(3.0, abs=0.05)
    samples = await decode_audio(out, 8000)
    assert samples.size == pytest.approx(24000, abs=100)
    assert float(abs(samples).max()) == pytest.approx(0.125, abs=0.01)  # lavfi sine: amplitude 1/8


async def test_a_failing_ffmpeg_raises_stage_failed(tmp_path):
    with pytest.raises(VidsynthError) as caught:
        await run_ffmpeg(["-i", tmp_path / "missing.mp4", tmp_path / "out.mp4"], expected_seconds=1.0)
    assert caught.value.code == "STAGE_FAILED"


async def test_probe_and_decode_of_a_non_media_file_fail_with_catalogued_codes(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(VidsynthError) as probed:
        await probe(junk)
    assert probed.value.code == "STAGE_OUTPUT_INVALID"
    with pytest.raises(VidsynthError) as decoded:
        await decode_audio(junk, 16000)
    assert decoded.value.code == "STAGE_FAILED"


async def test_cancelling_the_caller_kills_ffmpeg(tmp_path):
    started = asyncio.Event()

    async def on_progress(percent: float, message: str) -> None:
        started.set()

    task = asyncio.create_task(
        run_ffmpeg(
            ["-re", "-f", "lavfi", "-i", "sine=duration=60", "-f", "wav", tmp_path / "slow.wav"],
            expected_seconds=60.0,
            on_progress=on_progress,
        )
    )
    await asyncio.wait_for(started.wait(), timeout=30)
    children_before = [p for p in psutil.Process().children() if p.name() == "ffmpeg"]
    assert children_before
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in children_before)
