"""The built-in voice: Piper's neural en_US voice matched to the user's sample, or espeak-ng.

Voice-MATCHED speech, not cloning. The sample's median F0 and speaking rate are measured; Piper
speaks each chunk at a length scale that follows the rate, and Praat's PSOLA ("Change gender")
moves its pitch to the sample's median with the formants kept (scaled a little for high voices).
Piper ships one male voice. For a sample it cannot follow the choice is measured: the F0 the
shifted voice actually reached on the first chunk is compared with the target, and espeak-ng
(calibrated per voice at run time) takes over when shifted Joe misses it or the shift is beyond
what was measured to stay natural (see README, "Built-in media").
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

from libs.common.errors import VidsynthError
from services.stage_runner.media import voice as espeak_voice
from services.stage_runner.media.alignment import (
    Alignment,
    Phone,
    phones_from_sentences,
    spread_words,
    text_words,
    words_from_phones,
)
from services.stage_runner.media.chunking import (
    DEFAULT_SECONDS_PER_CHUNK,
    DEFAULT_WORDS_PER_MINUTE,
    split_script,
)
from services.stage_runner.media.progress import ProgressCallback, report, scaled
from services.stage_runner.media.speakable import speakable
from services.stage_runner.media.speech_engine import PIPER_VOICE_NAME, Reference, SpeechEngine
from services.stage_runner.media.worker_process import WorkerFailed

log = structlog.get_logger("stage_runner.media.neural_voice")

NOT_CLONING = "voice-matched speech, not cloning"
# DNSMOS (bench/pipeline.py) keeps shifted Joe above espeak-ng up to 2.9x his F0 (about 270 Hz);
# past 3x PSOLA is untested, so espeak-ng speaks instead.
MAX_PITCH_RATIO = 3.0
# Above this median F0 the sample is a high (typically female) voice: formants move up too.
HIGH_VOICE_F0_HZ = 165.0
HIGH_VOICE_FORMANT_RATIO = 1.1
# Shifted Joe must land within this share of the target F0, else espeak-ng is the closer voice.
F0_TOLERANCE = 0.12
# Speaking-rate estimates are rough (syllable peaks): follow them only within this range.
LENGTH_SCALE_RANGE = (0.8, 1.25)
SENTENCE_PAUSE_SECONDS = 0.22
TARGET_RMS_DBFS, PEAK_LIMIT = -20.0, 0.89


@dataclass(frozen=True)
class VoicePlan:
    engine: str  # "piper" or "espeak-ng"
    length_scale: float
    target_f0_hz: float
    reference_f0_hz: float
    formant_ratio: float
    reason: str

    @property
    def shifts_pitch(self) -> bool:
        return self.target_f0_hz > 0 and abs(self.target_f0_hz / self.reference_f0_hz - 1) > 0.03


@dataclass
class MatchedSpeech:
    path: Path
    duration_seconds: float
    sample_rate: int
    alignment: Alignment
    engine: str
    description: str
    dropped_words: int = 0
    messages: list[str] = field(default_factory=list)


def plan_voice(profile: espeak_voice.VoiceProfile, reference: Reference) -> VoicePlan:
    """How Piper follows the sample: length scale from the rates, pitch and formant targets."""
    length_scale = 1.0
    if profile.words_per_minute_estimate > 0 and reference.words_per_minute > 0:
        length_scale = float(
            np.clip(reference.words_per_minute / profile.words_per_minute_estimate, *LENGTH_SCALE_RANGE)
        )
    target = profile.median_f0_hz if profile.median_f0_hz > 0 else reference.f0_hz
    formant_ratio = HIGH_VOICE_FORMANT_RATIO if target > HIGH_VOICE_F0_HZ else 1.0
    ratio = target / reference.f0_hz if reference.f0_hz > 0 else 1.0
    if ratio > MAX_PITCH_RATIO or ratio < 1 / MAX_PITCH_RATIO:
        return VoicePlan(
            "espeak-ng",
            length_scale,
            target,
            reference.f0_hz,
            formant_ratio,
            f"a {target:.0f} Hz voice is {ratio:.1f}x Piper's {reference.f0_hz:.0f} Hz, beyond a natural shift",
        )
    return VoicePlan("piper", round(length_scale, 3), target, reference.f0_hz, formant_ratio, "")


def describe(plan: VoicePlan) -> str:
    """What the stage messages say about Piper's matched voice."""
    pitch = (
        f"pitch {plan.reference_f0_hz:.0f} -> {plan.target_f0_hz:.0f} Hz by PSOLA"
        + (f", formants x{plan.formant_ratio:.2f}" if plan.formant_ratio != 1.0 else "")
        if plan.shifts_pitch
        else f"pitch {plan.reference_f0_hz:.0f} Hz kept"
    )
    return f"voice: Piper {PIPER_VOICE_NAME} ({pitch}, length scale {plan.length_scale:.2f}); {NOT_CLONING}"


def _read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as source:
        return np.frombuffer(source.readframes(source.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def _write_pcm(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def normalise(samples: np.ndarray) -> np.ndarray:
    """Speech RMS to TARGET_RMS_DBFS over its loud part, peaks kept under PEAK_LIMIT."""
    if samples.size == 0:
        return samples
    frames = (
        samples[: samples.size // 512 * 512].reshape(-1, 512) if samples.size >= 512 else samples[None, :]
    )
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    voiced = rms[rms > 0.1 * rms.max()] if rms.max() > 0 else rms
    level = float(np.sqrt(np.mean(voiced**2))) if voiced.size else 0.0
    if level <= 1e-6:
        return samples
    gain = 10 ** (TARGET_RMS_DBFS / 20) / level
    peak = float(np.abs(samples).max())
    gain = min(gain, PEAK_LIMIT / peak) if peak > 0 else gain
    return (samples * gain).astype(np.float32)


def _split_sentences(audio: np.ndarray, sentences: list[list[tuple[str, int]]]) -> list[np.ndarray]:
    parts, start = [], 0
    for sentence in sentences:
        length = sum(n for _, n in sentence)
        parts.append(audio[start : start + length])
        start += length
    if start < audio.size and parts:
        parts[-1] = np.concatenate([parts[-1], audio[start:]])
    return parts or [audio]


def _join(
    chunk_audio: list[np.ndarray],
    chunk_sentences: list[list[list[tuple[str, int]]]],
    chunk_texts: list[str],
    rate: int,
) -> tuple[np.ndarray, Alignment]:
    """Chunks joined with a pause after every sentence; phones and words timed on the result."""
    pause = np.zeros(round(SENTENCE_PAUSE_SECONDS * rate), np.float32)
    pieces: list[np.ndarray] = []
    phones: list[Phone] = []
    words = []
    clock = 0.0
    for audio, sentences, text in zip(chunk_audio, chunk_sentences, chunk_texts, strict=True):
        chunk_phones: list[Phone] = []
        for part, sentence in zip(_split_sentences(audio, sentences), sentences or [[]], strict=False):
            timed = phones_from_sentences([sentence], rate, clock) if sentence else []
            clock += part.size / rate
            chunk_phones += timed
            pieces += [part, pause]
            chunk_phones.append(Phone(" ", clock, clock + pause.size / rate))
            clock += pause.size / rate
        phones += chunk_phones
        timed_words = words_from_phones(text, chunk_phones)
        if not timed_words and chunk_phones:
            timed_words = spread_words(text_words(text), chunk_phones[0].start, chunk_phones[-1].start)
        words += timed_words
    if pieces:
        pieces.pop()  # no pause after the last sentence
        phones.pop()
    joined = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return joined, Alignment(duration=joined.size / rate, source="piper", phones=phones, words=words)


async def _speak_with_piper(
    engine: SpeechEngine, plan: VoicePlan, chunks: list[str], work: Path, on_progress: ProgressCallback | None
) -> tuple[list[np.ndarray], list, int] | None:
    """Every chunk spoken and shifted; None when shifted Joe misses the target F0 (use espeak-ng)."""
    audio: list[np.ndarray] = []
    sentences: list = []
    rate = 0
    for index, chunk in enumerate(chunks):
        spoken = await engine.speak(chunk, work / f"piper-{index:04d}.wav", plan.length_scale)
        rate, path = spoken.sample_rate, spoken.path
        if plan.shifts_pitch:
            shifted = work / f"shifted-{index:04d}.wav"
            reached = await engine.change_gender(path, shifted, plan.target_f0_hz, plan.formant_ratio)
            if index == 0 and abs(reached / plan.target_f0_hz - 1) > F0_TOLERANCE:
                log.info("voice.shift_missed", target=plan.target_f0_hz, reached=reached)
                return None
            path = shifted
        audio.append(await asyncio.to_thread(_read_pcm, path))
        sentences.append(spoken.sentences)
        await report(
            on_progress, 100.0 * (index + 1) / len(chunks), f"spoke chunk {index + 1} of {len(chunks)}"
        )
    return audio, sentences, rate


async def _espeak(
    text: str,
    sample_wav: Path,
    out_wav: Path,
    on_progress: ProgressCallback | None,
    *,
    seconds_per_chunk: float,
    words_per_minute: float,
) -> tuple[float, int, Alignment]:
    result = await espeak_voice.synthesize(
        text,
        sample_wav,
        out_wav,
        on_progress,
        seconds_per_chunk=seconds_per_chunk,
        words_per_minute=words_per_minute,
    )
    words, clock = [], 0.0
    for chunk, seconds in zip(result.chunk_texts, result.chunk_seconds, strict=True):
        words += spread_words(text_words(chunk), clock, clock + seconds)
        clock += seconds
    return (
        result.duration_seconds,
        result.sample_rate,
        Alignment(result.duration_seconds, "estimate", [], words),
    )


async def _with_piper(
    engine: SpeechEngine,
    sample_wav: Path,
    chunks: list[str],
    work: Path,
    on_progress: ProgressCallback | None,
) -> tuple[np.ndarray, Alignment, int, VoicePlan] | str:
    """Piper's joined, timed speech and its plan; or why espeak-ng speaks instead."""
    await report(on_progress, 0.0, "analysing the voice sample")
    profile = await espeak_voice.analyse_voice(sample_wav)
    try:
        plan = plan_voice(profile, await engine.reference(work))
        if plan.engine != "piper":
            return plan.reason
        spoken = await _speak_with_piper(engine, plan, chunks, work, scaled(on_progress, 10.0, 90.0))
    except WorkerFailed as error:
        log.warning("voice.piper_failed", error=str(error))
        return "Piper failed"
    if spoken is None:
        return f"shifted Piper missed the sample's {plan.target_f0_hz:.0f} Hz by over {F0_TOLERANCE:.0%}"
    audio, alignment = await asyncio.to_thread(_join, spoken[0], spoken[1], chunks, spoken[2])
    return audio, alignment, spoken[2], plan


async def synthesize_matched(
    text: str,
    sample_wav: Path,
    out_wav: Path,
    engine: SpeechEngine | None,
    on_progress: ProgressCallback | None = None,
    *,
    seconds_per_chunk: float = DEFAULT_SECONDS_PER_CHUNK,
    words_per_minute: float = DEFAULT_WORDS_PER_MINUTE,
) -> MatchedSpeech:
    """Speak `text` matched to `sample_wav` into `out_wav`; Piper when `engine` is given and
    can follow the sample, else espeak-ng. SCRIPT_NOT_SPEAKABLE when nothing can be said."""
    cleaned = speakable(text)
    chunks = split_script(cleaned.text, seconds_per_chunk, words_per_minute)
    if not chunks:
        raise VidsynthError("SCRIPT_NOT_SPEAKABLE", "The script has nothing to say.")
    await asyncio.to_thread(out_wav.parent.mkdir, parents=True, exist_ok=True)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".neural-voice-", dir=out_wav.parent))
    messages = []
    if cleaned.dropped_words:
        messages.append(f"left out {cleaned.dropped_words} word(s) the English voice cannot read")
    try:
        reason = "Piper is not available"
        if engine is not None:
            piper = await _with_piper(engine, sample_wav, chunks, work, on_progress)
            if not isinstance(piper, str):
                audio, alignment, rate, plan = piper
                await asyncio.to_thread(_write_pcm, out_wav, normalise(audio), rate)
                description = describe(plan)
                await report(on_progress, 100.0, description)
                messages.append(description)
                return MatchedSpeech(
                    out_wav,
                    alignment.duration,
                    rate,
                    alignment,
                    "piper",
                    description,
                    cleaned.dropped_words,
                    messages,
                )
            reason = piper
            if reason == "Piper failed":
                messages.append("Piper failed; espeak-ng speaks instead")
        description = f"voice: espeak-ng matched to the sample ({reason}); {NOT_CLONING}"
        duration, rate, alignment = await _espeak(
            " ".join(chunks),
            sample_wav,
            out_wav,
            scaled(on_progress, 10.0, 100.0),
            seconds_per_chunk=seconds_per_chunk,
            words_per_minute=words_per_minute,
        )
        await report(on_progress, 100.0, description)
        messages.append(description)
        return MatchedSpeech(
            out_wav, duration, rate, alignment, "espeak-ng", description, cleaned.dropped_words, messages
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
