"""Built-in voice: espeak-ng speech whose pitch and rate are matched to the user's voice sample.

This is voice-MATCHED speech, not voice cloning: it measures the sample's median F0 and
speaking rate, then picks an espeak-ng voice (male/female variant), pitch (`-p`) and speed
(`-s`) that produce the closest F0 and rate. espeak-ng's response to `-p`/`-s` differs per
voice and version, so it is calibrated at run time by measuring espeak-ng's own output.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from libs.common import children
from libs.common.errors import VidsynthError
from services.stage_runner.media.chunking import (
    DEFAULT_SECONDS_PER_CHUNK,
    DEFAULT_WORDS_PER_MINUTE,
    split_script,
)
from services.stage_runner.media.ffmpeg import decode_audio, duration_of, probe, run_ffmpeg
from services.stage_runner.media.progress import ProgressCallback, report, scaled
from services.stage_runner.media.voice_analysis import ANALYSIS_RATE, median_f0, speaking_rate

log = structlog.get_logger("stage_runner.media.voice")

ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_SECONDS = 300.0
OUTPUT_SAMPLE_RATE = 22_050
MALE_VOICE = "en-us"
FEMALE_VOICE = "en-us+f3"
# Above this median F0 a voice is treated as a higher (typically female) voice.
_HIGH_VOICE_F0_HZ = 165.0
_DEFAULT_WPM = 150.0
_CALIBRATION_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells."
)
_CALIBRATION_PITCHES = (10, 50, 90)
_CALIBRATION_SPEEDS = (110, 190)


@dataclass(frozen=True)
class VoiceProfile:
    median_f0_hz: float
    words_per_minute_estimate: float
    speech_seconds: float
    duration_seconds: float


@dataclass(frozen=True)
class EspeakParameters:
    voice: str
    pitch: int
    speed: int


@dataclass(frozen=True)
class VoiceResult:
    path: Path
    duration_seconds: float
    sample_rate: int
    chunks: int
    profile: VoiceProfile
    parameters: EspeakParameters
    # Each chunk's text and length in the joined speech, for estimated word timings.
    chunk_texts: tuple[str, ...] = ()
    chunk_seconds: tuple[float, ...] = ()


@dataclass(frozen=True)
class _Calibration:
    pitches: tuple[int, ...]
    f0_hz: tuple[float, ...]
    speeds: tuple[int, ...]
    measured_wpm: tuple[float, ...]


# Per process; two concurrent first calibrations just both measure, which is harmless.
_calibrations: dict[str, _Calibration] = {}


def _has_samples(wav: Path) -> bool:
    return wav.exists() and wav.stat().st_size > 44  # more than a bare WAV header


async def _espeak(text: str, out_wav: Path, *, voice: str, pitch: int, speed: int) -> None:
    # Text goes through stdin, never argv, so a script can never be read as an option.
    argv = [ESPEAK, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(out_wav), "--stdin"]
    try:
        done = await children.run(argv, input=text.encode("utf-8"), time_limit=ESPEAK_TIMEOUT_SECONDS)
    except (children.ChildNotStartable, children.ChildTimeout) as error:
        log.warning("espeak_failed", error=str(error))
        raise VidsynthError("STAGE_FAILED", "Speech synthesis (espeak-ng) failed.") from None
    if done.returncode != 0 or not await asyncio.to_thread(_has_samples, out_wav):
        log.warning("espeak_failed", returncode=done.returncode, stderr=done.stderr_tail)
        raise VidsynthError("STAGE_FAILED", "Speech synthesis (espeak-ng) failed.")


# Calibration clips vary one setting each, so each measures only what it calibrates
# (YIN pitch tracking is the costly part).
async def _measure_f0(path: Path) -> float:
    return await asyncio.to_thread(median_f0, await decode_audio(path, ANALYSIS_RATE))


async def _measure_wpm(path: Path) -> float:
    wpm, _ = await asyncio.to_thread(speaking_rate, await decode_audio(path, ANALYSIS_RATE))
    return wpm


async def _calibrate(voice: str, work_dir: Path) -> _Calibration:
    if voice in _calibrations:
        return _calibrations[voice]
    f0s: list[float] = []
    for pitch in _CALIBRATION_PITCHES:
        wav = work_dir / f"calibrate-p{pitch}.wav"
        await _espeak(_CALIBRATION_TEXT, wav, voice=voice, pitch=pitch, speed=150)
        f0s.append(await _measure_f0(wav))
    rates: list[float] = []
    for speed in _CALIBRATION_SPEEDS:
        wav = work_dir / f"calibrate-s{speed}.wav"
        await _espeak(_CALIBRATION_TEXT, wav, voice=voice, pitch=50, speed=speed)
        rates.append(await _measure_wpm(wav))
    calibration = _Calibration(_CALIBRATION_PITCHES, tuple(f0s), _CALIBRATION_SPEEDS, tuple(rates))
    log.info("espeak_calibrated", voice=voice, f0_hz=f0s, measured_wpm=rates)
    _calibrations[voice] = calibration
    return calibration


def _interpolate(target: float, measured: tuple[float, ...], settings: tuple[int, ...]) -> float:
    """The setting whose measured value is `target`, linear between (and beyond) calibration points."""
    xs = np.asarray(measured, dtype=float)
    ys = np.asarray(settings, dtype=float)
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    if xs[-1] - xs[0] < 1e-6:
        return float(ys[len(ys) // 2])
    if target < xs[0]:
        return float(ys[0] + (target - xs[0]) * (ys[1] - ys[0]) / max(xs[1] - xs[0], 1e-6))
    if target > xs[-1]:
        return float(ys[-1] + (target - xs[-1]) * (ys[-1] - ys[-2]) / max(xs[-1] - xs[-2], 1e-6))
    return float(np.interp(target, xs, ys))


def choose_voice(profile: VoiceProfile) -> str:
    return FEMALE_VOICE if profile.median_f0_hz > _HIGH_VOICE_F0_HZ else MALE_VOICE


def espeak_parameters(profile: VoiceProfile, voice: str, calibration: _Calibration) -> EspeakParameters:
    pitch = 50.0
    if profile.median_f0_hz > 0:
        pitch = _interpolate(profile.median_f0_hz, calibration.f0_hz, calibration.pitches)
    speed = float(_DEFAULT_WPM)
    if profile.words_per_minute_estimate > 0:
        speed = _interpolate(profile.words_per_minute_estimate, calibration.measured_wpm, calibration.speeds)
    # Keep within what espeak-ng accepts and what stays intelligible.
    return EspeakParameters(voice, round(float(np.clip(pitch, 0, 99))), round(float(np.clip(speed, 90, 260))))


async def analyse_voice(sample_wav: Path) -> VoiceProfile:
    """The sample's median F0 (YIN) and speaking rate (syllable-like energy peaks)."""
    samples = await decode_audio(sample_wav, ANALYSIS_RATE)
    if samples.size < ANALYSIS_RATE // 4:
        raise VidsynthError("STAGE_FAILED", "The voice sample is too short to analyse.")
    f0 = await asyncio.to_thread(median_f0, samples)
    wpm, speech_seconds = await asyncio.to_thread(speaking_rate, samples)
    return VoiceProfile(
        median_f0_hz=f0,
        words_per_minute_estimate=wpm,
        speech_seconds=speech_seconds,
        duration_seconds=samples.size / ANALYSIS_RATE,
    )


async def synthesize(
    text: str,
    sample_wav: Path,
    out_wav: Path,
    on_progress: ProgressCallback | None = None,
    *,
    seconds_per_chunk: float = DEFAULT_SECONDS_PER_CHUNK,
    words_per_minute: float = DEFAULT_WORDS_PER_MINUTE,
) -> VoiceResult:
    """Speak `text` with espeak-ng matched to `sample_wav`: per chunk, joined, loudness-normalised WAV."""
    chunks = split_script(text, seconds_per_chunk, words_per_minute)
    if not chunks:
        raise VidsynthError("STAGE_FAILED", "The script has nothing to say.")
    await asyncio.to_thread(out_wav.parent.mkdir, parents=True, exist_ok=True)
    work_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".voice-", dir=out_wav.parent))
    partial = out_wav.with_name(f".{out_wav.stem}.partial.wav")
    try:
        await report(on_progress, 0.0, "analysing the voice sample")
        profile = await analyse_voice(sample_wav)
        voice = choose_voice(profile)
        parameters = espeak_parameters(profile, voice, await _calibrate(voice, work_dir))
        log.info("voice_matched", profile=profile, parameters=parameters)
        await report(on_progress, 10.0, "voice matched")
        chunk_paths: list[Path] = []
        for index, chunk in enumerate(chunks):
            chunk_wav = work_dir / f"chunk-{index:04d}.wav"
            await _espeak(
                chunk, chunk_wav, voice=parameters.voice, pitch=parameters.pitch, speed=parameters.speed
            )
            chunk_paths.append(chunk_wav)
            await report(on_progress, 10.0 + 70.0 * (index + 1) / len(chunks), f"spoke chunk {index + 1}")
        concat_list = work_dir / "chunks.txt"
        listing = "".join(f"file '{p.name}'\n" for p in chunk_paths)  # generated names only
        await asyncio.to_thread(concat_list.write_text, listing)
        chunk_seconds = tuple(duration_of(info) for info in await asyncio.gather(*map(probe, chunk_paths)))
        expected = sum(chunk_seconds)
        await run_ffmpeg(
            [
                *("-f", "concat", "-safe", "0", "-i", concat_list),
                *("-af", "loudnorm=I=-16:TP=-1.5:LRA=11"),
                *("-ac", "1", "-ar", str(OUTPUT_SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav"),
                partial,
            ],
            expected_seconds=expected,
            on_progress=scaled(on_progress, 80.0, 100.0),
            failure_message="Joining and normalising the speech failed.",
        )
        duration = duration_of(await probe(partial))
        if duration <= 0:
            raise VidsynthError("STAGE_OUTPUT_INVALID", "The synthesised speech is empty.")
        partial.replace(out_wav)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        await asyncio.to_thread(shutil.rmtree, work_dir, True)
    return VoiceResult(
        out_wav, duration, OUTPUT_SAMPLE_RATE, len(chunks), profile, parameters, tuple(chunks), chunk_seconds
    )
