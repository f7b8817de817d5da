"""Inputs for the media tests, generated here: a drawn face, espeak-ng voice samples, speech with pauses."""

from __future__ import annotations

import asyncio
import subprocess
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

SAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells."
)
SPEECH_RATE = 22_050


def draw_face(canvas: np.ndarray, centre: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """A flat cartoon face the OpenCV frontal-face cascade detects: hair, skin, brows, eyes, nose, mouth."""
    cx, cy = centre
    s = scale

    def pt(dx: float, dy: float) -> tuple[int, int]:
        return int(cx + dx * s), int(cy + dy * s)

    def ax(a: float, b: float) -> tuple[int, int]:
        return int(a * s), int(b * s)

    cv2.ellipse(canvas, pt(0, -25), ax(92, 110), 0, 0, 360, (30, 40, 60), -1)
    cv2.ellipse(canvas, pt(0, 0), ax(80, 105), 0, 0, 360, (150, 180, 220), -1)
    for dx in (-32, 32):
        cv2.ellipse(canvas, pt(dx, -42), ax(20, 6), 0, 180, 360, (40, 50, 70), -1)
        cv2.ellipse(canvas, pt(dx, -22), ax(16, 8), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(canvas, pt(dx, -22), int(6 * s), (50, 40, 30), -1)
    cv2.ellipse(canvas, pt(0, 12), ax(10, 6), 0, 0, 360, (120, 150, 190), -1)
    cv2.ellipse(canvas, pt(0, 48), ax(28, 8), 0, 0, 360, (70, 70, 150), -1)
    return cv2.GaussianBlur(canvas, (0, 0), 1.5 * s)


def background(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), (70, 90, 110), np.uint8)


@pytest.fixture(scope="session")
def media_inputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media-inputs")


@pytest.fixture(scope="session")
def face_photo(media_inputs) -> Path:
    path = media_inputs / "face.png"
    cv2.imwrite(str(path), draw_face(background(320, 400), (160, 200)))
    return path


@pytest.fixture(scope="session")
def two_faces_photo(media_inputs) -> Path:
    path = media_inputs / "two-faces.png"
    canvas = draw_face(background(700, 400), (180, 200))
    cv2.imwrite(str(path), draw_face(canvas, (520, 200)))
    return path


@pytest.fixture(scope="session")
def no_face_photo(media_inputs) -> Path:
    path = media_inputs / "landscape.png"
    canvas = background(320, 240)
    cv2.rectangle(canvas, (20, 150), (300, 230), (40, 120, 40), -1)
    cv2.circle(canvas, (250, 60), 30, (80, 220, 250), -1)
    cv2.imwrite(str(path), canvas)
    return path


def espeak_wav(path: Path, text: str, *, pitch: int = 50, speed: int = 150, voice: str = "en-us") -> Path:
    subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(path), "--stdin"],
        input=text.encode(),
        check=True,
        capture_output=True,
    )
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        channels, rate = wav.getnchannels(), wav.getframerate()
    return data.reshape(-1, channels)[:, 0].astype(np.float32) / 32768, rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="session")
def high_voice_sample(media_inputs) -> Path:
    """A male espeak-ng voice raised to the top of its pitch range (about 150 Hz)."""
    return espeak_wav(media_inputs / "high.wav", SAMPLE_TEXT, pitch=90)


@pytest.fixture(scope="session")
def low_voice_sample(media_inputs) -> Path:
    """A male espeak-ng voice at the bottom of its pitch range (about 75 Hz)."""
    return espeak_wav(media_inputs / "low.wav", SAMPLE_TEXT, pitch=10)


@pytest.fixture(scope="session")
def speech_with_pauses(media_inputs) -> tuple[Path, list[tuple[float, float]]]:
    """About 4.4 s: speech, 1 s of digital silence, speech, 1 s of silence; and the speech spans."""
    phrase, rate = read_wav(espeak_wav(media_inputs / "phrase.wav", "Hello there, how are you today?"))
    voiced = np.nonzero(np.abs(phrase) > 0.01)[0]
    phrase = phrase[voiced[0] : voiced[-1] + 1]
    silence = np.zeros(rate, dtype=np.float32)
    spans = []
    pieces = []
    cursor = 0.0
    for _ in range(2):
        spans.append((cursor, cursor + phrase.size / rate))
        pieces += [phrase, silence]
        cursor += (phrase.size + silence.size) / rate
    path = write_wav(media_inputs / "speech-with-pauses.wav", np.concatenate(pieces), rate)
    return path, spans


@pytest.fixture(scope="session")
def face_crop(face_photo, media_inputs) -> Path:
    from services.stage_runner.media.face import crop_face

    out = media_inputs / "crop-256.png"
    asyncio.run(crop_face(face_photo, out, size=256))
    return out


@pytest.fixture(scope="session")
def talking_head(face_crop, speech_with_pauses, media_inputs):
    """A silent animation of the drawn face speaking `speech_with_pauses` (rendered once)."""
    from services.stage_runner.media.animate import animate

    return asyncio.run(animate(face_crop, speech_with_pauses[0], media_inputs / "animation.mp4"))


def read_gray_frames(video: Path) -> np.ndarray:
    """Every frame of `video` as grayscale uint8, shape (frames, height, width)."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            str(video),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    width, height = (int(v) for v in probe.stdout.strip().split(","))
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width)
