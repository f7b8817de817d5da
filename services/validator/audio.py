"""Audio checks with ffprobe/ffmpeg (asyncio subprocesses, no shell): what the header
claims, what actually decodes, and whether anything audible is in it. Decoding
writes the safe copy (16-bit PCM WAV, metadata dropped) in the same pass."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libs.common.errors import VidsynthError
from services.validator.config import ValidatorSettings

SAFE_COPY_CONTENT_TYPE = "audio/wav"
SAFE_COPY_SUFFIX = ".wav"
# The demuxer per detected type: ffmpeg never guesses, so no playlist or other
# container with side effects is ever opened from an upload.
DEMUXERS = {
    "audio/x-wav": "wav",
    "audio/mpeg": "mp3",
    "audio/flac": "flac",
    "audio/ogg": "ogg",
    "audio/x-m4a": "mov",
    "video/mp4": "mov",
    "audio/x-hx-aac-adts": "aac",
}
_INPUT_GUARD = ["-protocol_whitelist", "file"]
_RMS_BLOCK_FRAMES = 1 << 18


@dataclass(frozen=True)
class AudioFacts:
    duration_seconds: float
    sample_rate: int
    channels: int
    rms_dbfs: float
    warnings: tuple[str, ...] = ()


def _corrupt(detail: str = "The audio could not be decoded; it is damaged or incomplete.") -> VidsynthError:
    return VidsynthError("FILE_CORRUPT", detail)


async def _run(argv: list[str], limit_seconds: float) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, _stderr = await asyncio.wait_for(proc.communicate(), limit_seconds)
    except BaseException as exc:
        # Timed out or the call was cancelled: no ffmpeg may outlive it (or keep writing).
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise _corrupt("The audio took too long to decode.") from None
        raise
    return proc.returncode or 0, stdout


async def probe(path: Path, demuxer: str, limit_seconds: float) -> dict:
    """What the container's headers claim: format duration and the first audio stream."""
    code, out = await _run(
        [
            "ffprobe", "-v", "error", *_INPUT_GUARD, "-f", demuxer,
            "-show_entries", "format=duration:stream=codec_type,sample_rate,channels",
            "-of", "json", str(path),
        ],
        limit_seconds,
    )  # fmt: skip
    if code != 0:
        raise _corrupt()
    info = json.loads(out or b"{}")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise _corrupt("The file holds no audio stream.")
    return {"stream": streams[0], "duration": _float(info.get("format", {}).get("duration"))}


_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the size open


def wav_claimed_seconds(path: Path) -> float | None:
    """Blocking: the length a WAV's own headers claim (ffprobe clamps it to the file
    size, hiding exactly the lie we look for); None when it makes no claim."""
    with path.open("rb") as fh:
        head = fh.read(64 * 1024)
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk_id, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk_id == b"fmt " and pos + 16 <= len(head):
            byte_rate = struct.unpack_from("<I", head, pos + 16)[0]
        if chunk_id == b"data":
            if size in _UNKNOWN_WAV_SIZES or not byte_rate:
                return None
            return size / byte_rate
        pos += 8 + size + (size & 1)
    return None


def _float(value) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


async def decode_to_wav(
    path: Path, demuxer: str, out_path: Path, max_seconds: float, limit_seconds: float
) -> None:
    """Decodes the first audio stream into 16-bit PCM WAV, stopping just past the
    longest accepted duration so an over-long upload costs bounded work."""
    code, _ = await _run(
        [
            "ffmpeg", "-nostdin", "-v", "error", *_INPUT_GUARD, "-f", demuxer, "-i", str(path),
            "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1",
            "-t", f"{max_seconds + 1:.3f}", "-c:a", "pcm_s16le", "-f", "wav", "-y", str(out_path),
        ],
        limit_seconds,
    )  # fmt: skip
    if code != 0:
        raise _corrupt()


def measure_wav(path: Path) -> tuple[float, int, int, float]:
    """Blocking: (duration, sample rate, channels, RMS in dBFS) of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, frames = wav.getframerate(), wav.getnchannels(), wav.getnframes()
        total = 0.0
        count = 0
        while block := wav.readframes(_RMS_BLOCK_FRAMES):
            samples = np.frombuffer(block, dtype="<i2").astype(np.float64)
            total += float(np.dot(samples, samples))
            count += samples.size
    rms = math.sqrt(total / count) / 32768.0 if count else 0.0
    dbfs = 20 * math.log10(rms) if rms > 0 else -math.inf
    return (frames / rate if rate else 0.0), rate, channels, dbfs


def check_audio(
    declared_duration: float | None, duration: float, rate: int, channels: int, dbfs: float,
    settings: ValidatorSettings,
) -> None:  # fmt: skip
    """Pure checks on what decoding measured; raises the catalogued refusal."""
    if duration <= 0:
        raise VidsynthError("AUDIO_TOO_SHORT", "The audio holds no samples.")
    tolerance = settings.validator_audio_length_tolerance
    header_lies = (
        declared_duration is not None
        and duration < settings.validator_audio_max_seconds
        and abs(declared_duration - duration) > max(0.25, tolerance * duration)
    )
    if header_lies:
        raise _corrupt(f"The audio's header claims {declared_duration:.1f} s but it holds {duration:.1f} s.")
    if duration < settings.validator_audio_min_seconds:
        raise VidsynthError(
            "AUDIO_TOO_SHORT",
            f"The voice sample is {duration:.1f} s; at least {settings.validator_audio_min_seconds:g} s "
            "is needed.",
        )
    if duration > settings.validator_audio_max_seconds:
        raise VidsynthError(
            "AUDIO_TOO_LONG",
            f"The voice sample is longer than the {settings.validator_audio_max_seconds:g} s allowed.",
        )
    if rate < settings.validator_audio_min_sample_rate or channels > settings.validator_audio_max_channels:
        raise VidsynthError(
            "AUDIO_FORMAT_UNSUPPORTED",
            f"The audio is {rate} Hz with {channels} channels; at least "
            f"{settings.validator_audio_min_sample_rate} Hz and at most "
            f"{settings.validator_audio_max_channels} channels are accepted.",
        )
    if dbfs < settings.validator_audio_silence_dbfs:
        raise VidsynthError("AUDIO_SILENT")


async def inspect_audio(path: Path, detected: str, out_path: Path, settings: ValidatorSettings) -> AudioFacts:
    """Every audio check; on success `out_path` holds the safe copy."""
    timeout = settings.validator_media_timeout_seconds
    demuxer = DEMUXERS[detected]
    decoding = decode_to_wav(path, demuxer, out_path, settings.validator_audio_max_seconds, timeout)
    # A WAV's claim is in its own header (ffprobe would clamp it to the file size).
    claiming = (
        asyncio.to_thread(wav_claimed_seconds, path) if demuxer == "wav" else probe(path, demuxer, timeout)
    )
    # Both run to the end even if one fails, so no ffmpeg outlives the call (or its output file).
    claimed, decoded = await asyncio.gather(claiming, decoding, return_exceptions=True)
    for outcome in (decoded, claimed):
        if isinstance(outcome, BaseException):
            raise outcome
    claimed_seconds = claimed if demuxer == "wav" else claimed["duration"]
    duration, rate, channels, dbfs = await asyncio.to_thread(measure_wav, out_path)
    check_audio(claimed_seconds, duration, rate, channels, dbfs, settings)
    return AudioFacts(duration, rate, channels, dbfs)
