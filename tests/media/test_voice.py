from __future__ import annotations

import numpy as np
import pytest

from libs.common.errors import VidsynthError
from services.stage_runner.media.ffmpeg import decode_audio, probe, stream_of
from services.stage_runner.media.voice import OUTPUT_SAMPLE_RATE, analyse_voice, synthesize
from services.stage_runner.media.voice_analysis import median_f0
from tests.media.conftest import espeak_wav, write_wav

SCRIPT = "Welcome to the show. Today we talk about rivers, and why they bend. Stay with us."


def test_pitch_tracking_finds_the_frequency_of_a_harmonic_tone():
    rate = 16000
    t = np.arange(rate) / rate
    for f0 in (90.0, 140.0, 230.0):
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)).astype(np.float32) * 0.3
        assert median_f0(tone, rate) == pytest.approx(f0, rel=0.02)


async def test_analyse_voice_orders_samples_by_pitch_and_rate(high_voice_sample, low_voice_sample, tmp_path):
    high = await analyse_voice(high_voice_sample)
    low = await analyse_voice(low_voice_sample)
    assert 130 < high.median_f0_hz < 180
    assert 60 < low.median_f0_hz < 95
    slow = await analyse_voice(espeak_wav(tmp_path / "slow.wav", SCRIPT * 2, speed=100))
    fast = await analyse_voice(espeak_wav(tmp_path / "fast.wav", SCRIPT * 2, speed=220))
    assert fast.words_per_minute_estimate > 1.3 * slow.words_per_minute_estimate
    assert slow.speech_seconds > fast.speech_seconds


async def test_synthesised_pitch_moves_to_the_sample_pitch(high_voice_sample, low_voice_sample, tmp_path):
    default_f0 = median_f0(await decode_audio(espeak_wav(tmp_path / "default.wav", SCRIPT), 16000))
    for sample in (high_voice_sample, low_voice_sample):
        sample_f0 = (await analyse_voice(sample)).median_f0_hz
        result = await synthesize(SCRIPT, sample, tmp_path / f"out-{sample.stem}.wav")
        out_f0 = median_f0(await decode_audio(result.path, 16000))
        # Measured: the output lands far closer to the sample than espeak-ng's default voice does.
        assert abs(out_f0 - sample_f0) < 0.35 * abs(default_f0 - sample_f0), (sample_f0, out_f0, default_f0)
        assert abs(out_f0 - sample_f0) / sample_f0 < 0.12


async def test_synthesis_writes_a_normalised_mono_wav_in_chunks_with_progress(high_voice_sample, tmp_path):
    seen: list[tuple[float, str]] = []

    async def on_progress(percent: float, message: str) -> None:
        seen.append((percent, message))

    text = " ".join(f"This is sentence number {n} of the test script." for n in range(1, 13))
    out = tmp_path / "speech.wav"
    result = await synthesize(text, high_voice_sample, out, on_progress, seconds_per_chunk=8.0)
    assert result.chunks >= 3
    assert [m for _, m in seen if m.startswith("spoke chunk")] == [
        f"spoke chunk {n}" for n in range(1, result.chunks + 1)
    ]
    assert [p for p, _ in seen] == sorted(p for p, _ in seen) and seen[-1][0] == 100.0
    audio = stream_of(await probe(out), "audio")
    assert audio["channels"] == 1 and int(audio["sample_rate"]) >= 22050 == OUTPUT_SAMPLE_RATE
    samples = await decode_audio(out, 16000)
    assert result.duration_seconds == pytest.approx(samples.size / 16000, abs=0.05)
    # loudnorm to -16 LUFS: speech RMS ends up roughly -20..-14 dBFS and never clips.
    loud = samples[np.abs(samples) > 0.01]
    rms_db = 20 * np.log10(np.sqrt(np.mean(loud**2)))
    assert -24 < rms_db < -10 and np.abs(samples).max() < 0.99
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


async def test_a_corrupt_or_silent_voice_sample_fails_the_stage(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(VidsynthError) as caught:
        await synthesize(SCRIPT, corrupt, tmp_path / "out.wav")
    assert caught.value.code == "STAGE_FAILED"
    too_short = write_wav(tmp_path / "short.wav", np.zeros(1000, dtype=np.float32), 16000)
    with pytest.raises(VidsynthError) as caught:
        await synthesize(SCRIPT, too_short, tmp_path / "out.wav")
    assert caught.value.code == "STAGE_FAILED"
    assert not (tmp_path / "out.wav").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


async def test_a_script_with_nothing_to_say_fails_the_stage(high_voice_sample, tmp_path):
    with pytest.raises(VidsynthError) as caught:
        await synthesize("** ## **", high_voice_sample, tmp_path / "out.wav")
    assert caught.value.code == "STAGE_FAILED"


async def test_synthesised_rate_follows_the_sample_rate(tmp_path):
    slow_sample = espeak_wav(tmp_path / "slow.wav", SCRIPT * 2, speed=100)
    fast_sample = espeak_wav(tmp_path / "fast.wav", SCRIPT * 2, speed=220)
    slow = await synthesize(SCRIPT, slow_sample, tmp_path / "slow-out.wav")
    fast = await synthesize(SCRIPT, fast_sample, tmp_path / "fast-out.wav")
    assert slow.parameters.speed < 130 < 170 < fast.parameters.speed
    # The same words take clearly longer in the slow speaker's rate.
    assert slow.duration_seconds > 1.4 * fast.duration_seconds
