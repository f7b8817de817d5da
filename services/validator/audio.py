"""Audio checks with ffprobe/ffmpeg (asyncio subprocesses, no shell): what the header
claims, what actually decodes, and whether anything audible is in it. Decoding
writes the safe copy (16-bit PCM WAV, metadata dropped) in the same pass: an ffmpeg
started while the upload arrived reads the spool through a pipe (audio_prestart.py),
or, when that guess does not hold, a fresh ffmpeg reads the spooled file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from libs.common import children
from libs.common.errors import VidsynthError
from services.validator import storage
from services.validator.config import ValidatorSettings

if TYPE_CHECKING:
    from services.validator.audio_prestart import PrestartedDecode

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
_MEASURE_BLOCK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class AudioFacts:
    duration_seconds: float
    sample_rate: int
    channels: int
    rms_dbfs: float
    # Of the safe copy (the whole WAV file), computed while measuring it.
    safe_copy_sha256: str = ""


def _corrupt(detail: str = "The audio could not be decoded; it is damaged or incomplete.") -> VidsynthError:
    return VidsynthError("FILE_CORRUPT", detail)


async def _run(argv: list[str], limit_seconds: float) -> children.Completed:
    try:
        return await children.run(argv, time_limit=limit_seconds)
    except children.ChildTimeout:
        raise _corrupt("The audio took too long to decode.") from None


async def probe(path: Path, demuxer: str, limit_seconds: float) -> dict:
    """What the container's headers claim: format duration and the first audio stream."""
    done = await _run(
        [
            "ffprobe", "-v", "error", *_INPUT_GUARD, "-f", demuxer,
            "-show_entries", "format=duration:stream=codec_type,sample_rate,channels",
            "-of", "json", str(path),
        ],
        limit_seconds,
    )  # fmt: skip
    if done.returncode != 0:
        raise _corrupt()
    info = json.loads(done.stdout or b"{}")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise _corrupt("The file holds no audio stream.")
    return {"stream": streams[0], "duration": _float(info.get("format", {}).get("duration"))}


_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the size open
_WAV_HEAD_BYTES = 64 * 1024


def _wav_data_chunk(head: bytes) -> tuple[int, int, int] | None:
    """(byte rate from `fmt `, offset of the sample data, its declared size) from the
    first bytes of a WAV; None when no `data` chunk starts within them."""
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk_id, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk_id == b"fmt " and pos + 16 <= len(head):
            byte_rate = struct.unpack_from("<I", head, pos + 16)[0]
        if chunk_id == b"data":
            return byte_rate, pos + 8, size
        pos += 8 + size + (size & 1)
    return None


def wav_claimed_seconds(path: Path) -> float | None:
    """Blocking: the length a WAV's own headers claim (ffprobe clamps it to the file
    size, hiding exactly the lie we look for); None when it makes no claim."""
    with path.open("rb") as fh:
        chunk = _wav_data_chunk(fh.read(_WAV_HEAD_BYTES))
    if chunk is None:
        return None
    byte_rate, _offset, size = chunk
    if size in _UNKNOWN_WAV_SIZES or not byte_rate:
        return None
    return size / byte_rate


def _float(value) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def decode_argv(source: str, demuxer: str, out_path: Path, max_seconds: float) -> list[str]:
    """ffmpeg decoding the first audio stream of `source` ("pipe:0" or a file path)
    into 16-bit PCM WAV, stopping just past the longest accepted duration so an
    over-long upload costs bounded work; only the one protocol `source` needs."""
    protocol = "pipe" if source.startswith("pipe:") else "file"
    return [
        "ffmpeg", "-nostdin", "-v", "error",
        "-protocol_whitelist", protocol, "-f", demuxer, "-i", source,
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1",
        "-t", f"{max_seconds + 1:.3f}", "-c:a", "pcm_s16le", "-f", "wav", "-y", str(out_path),
    ]  # fmt: skip


async def decode_to_wav(
    path: Path, demuxer: str, out_path: Path, max_seconds: float, limit_seconds: float
) -> None:
    """Decodes the spooled upload into the safe copy (FILE_CORRUPT when it does not decode,
    INSUFFICIENT_STORAGE when the safe copy does not fit on the disk)."""
    done = await _run(decode_argv(str(path), demuxer, out_path, max_seconds), limit_seconds)
    if done.returncode != 0:
        if storage.FFMPEG_OUT_OF_SPACE in done.stderr_tail:
            raise storage.insufficient_storage()
        raise _corrupt()


@dataclass(frozen=True)
class WavMeasure:
    duration_seconds: float
    sample_rate: int
    channels: int
    rms_dbfs: float
    sha256: str


def measure_wav(path: Path) -> WavMeasure:
    """Blocking, one read of the 16-bit PCM WAV ffmpeg wrote: its format, the RMS level
    of its samples in dBFS, and the sha256 of the whole file (so publishing it needs
    no second read)."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, frames = wav.getframerate(), wav.getnchannels(), wav.getnframes()
    digest = hashlib.sha256()
    total, count, position = 0, 0, 0
    with path.open("rb") as fh:
        head = fh.read(_WAV_HEAD_BYTES)
        fh.seek(0)
        chunk = _wav_data_chunk(head)
        start = chunk[1] if chunk else 0
        end = start + (frames * channels * 2 if chunk else 0)
        while block := fh.read(_MEASURE_BLOCK_BYTES):
            digest.update(block)
            low, high = max(position, start), min(position + len(block), end)
            if high > low:
                samples = np.frombuffer(block, dtype="<i2", offset=low - position, count=(high - low) // 2)
                # Exact integer sum of squares. Not np.dot: on floats it goes to
                # multi-threaded BLAS, whose idle threads then spin on the other core.
                total += int(np.square(samples, dtype=np.int32).sum(dtype=np.int64))
                count += samples.size
            position += len(block)
    rms = math.sqrt(total / count) / 32768.0 if count else 0.0
    dbfs = 20 * math.log10(rms) if rms > 0 else -math.inf
    return WavMeasure((frames / rate if rate else 0.0), rate, channels, dbfs, digest.hexdigest())


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


async def inspect_audio(
    path: Path,
    detected: str,
    out_path: Path,
    settings: ValidatorSettings,
    early: PrestartedDecode | None = None,
) -> AudioFacts:
    """Every audio check; on success `out_path` holds the safe copy. `early` is a decode
    into `out_path` started while the upload arrived: used only when it read the upload
    with the demuxer its final type calls for and succeeded, else the spool is decoded."""
    timeout = settings.validator_media_timeout_seconds
    demuxer = DEMUXERS[detected]
    decoding = _decode(path, demuxer, out_path, settings, early)
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
    measured = await asyncio.to_thread(measure_wav, out_path)
    check_audio(
        claimed_seconds, measured.duration_seconds, measured.sample_rate, measured.channels,
        measured.rms_dbfs, settings,
    )  # fmt: skip
    return AudioFacts(
        measured.duration_seconds, measured.sample_rate, measured.channels, measured.rms_dbfs, measured.sha256
    )


async def _decode(
    path: Path, demuxer: str, out_path: Path, settings: ValidatorSettings, early: PrestartedDecode | None
) -> None:
    timeout = settings.validator_media_timeout_seconds
    if early is not None:
        if early.demuxer == demuxer and await early.finish(path, timeout):
            return
        await early.abort()  # a wrong guess or a failed pipe decode: the spool decides
    await decode_to_wav(path, demuxer, out_path, settings.validator_audio_max_seconds, timeout)
