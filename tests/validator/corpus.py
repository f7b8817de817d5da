"""The hostile (and the honest) uploads the validator tests send, generated here."""

from __future__ import annotations

import functools
import io
import math
import struct
import subprocess
import wave
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidsynth.v1 import common_pb2

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PORTRAIT = SAMPLES / "portrait.jpg"
VOICE = SAMPLES / "voice.wav"
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
FACE = common_pb2.ASSET_KIND_FACE_IMAGE
VOICE_KIND = common_pb2.ASSET_KIND_VOICE_AUDIO


@dataclass(frozen=True)
class Case:
    name: str
    kind: int
    filename: str
    data: bytes
    code: str
    content_type: str = ""


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def portrait() -> Image.Image:
    return Image.open(PORTRAIT).convert("RGB")


def two_faces() -> bytes:
    face = portrait()
    canvas = Image.new("RGB", (face.width * 2, face.height))
    canvas.paste(face, (0, 0))
    canvas.paste(face, (face.width, 0))
    return jpeg(canvas)


def no_face() -> bytes:
    rng = np.random.default_rng(7)
    return jpeg(Image.fromarray((rng.random((400, 400, 3)) * 255).astype("uint8")))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pixel_bomb(side: int = 50_000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: a few hundred KB that would decode to GBs."""
    row = b"\x00" * (1 + math.ceil(side / 8))
    compressor = zlib.compressobj(1)
    block = row * 1000
    parts = [compressor.compress(block) for _ in range(side // 1000)]
    parts.append(compressor.compress(row * (side % 1000)))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.txt", "not an image")
    return out.getvalue()


def wav(seconds: float, *, rate: int = 16000, amplitude: float = 0.3, freq: float = 220.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    # A warbling tone: not silence, not pure DC.
    signal = amplitude * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((signal * 32767).astype("<i2").tobytes())
    return out.getvalue()


def lying_wav() -> bytes:
    """2 s of audio whose RIFF and data headers claim 60 s."""
    data = bytearray(wav(2.0))
    claimed = 60 * 16000 * 2
    struct.pack_into("<I", data, 4, claimed + 36)
    struct.pack_into("<I", data, 40, claimed)
    return bytes(data)


def mp3(seconds: float) -> bytes:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"sine=f=330:d={seconds}", "-f", "mp3", "-"],
        check=True,
        capture_output=True,
    ).stdout


def elf() -> bytes:
    return Path("/bin/true").read_bytes()


@functools.cache
def refusal_cases() -> list[Case]:
    """Every hostile upload with the exact code it must earn."""
    photo = PORTRAIT.read_bytes()
    clean_png = png(portrait())
    return [
        Case("eicar-plain", FACE, "photo.jpg", EICAR, "MALWARE_DETECTED"),
        Case("eicar-in-jpeg", FACE, "photo.jpg", photo + EICAR, "MALWARE_DETECTED"),
        Case("png-with-zip-tail", FACE, "photo.png", clean_png + zip_bytes(), "FILE_CONTENT_MISMATCH"),
        Case("zip-as-jpeg", FACE, "photo.jpg", zip_bytes(), "FILE_TYPE_NOT_ALLOWED"),
        Case(
            "html-as-png", FACE, "photo.png", b"<html><body><script>alert(1)</script></body></html>",
            "FILE_TYPE_NOT_ALLOWED",
        ),
        Case(
            "svg-as-png", FACE, "photo.png",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "FILE_TYPE_NOT_ALLOWED",
        ),
        Case("elf-as-wav", VOICE_KIND, "voice.wav", elf(), "FILE_TYPE_NOT_ALLOWED"),
        Case("png-named-jpg", FACE, "photo.jpg", clean_png, "FILE_CONTENT_MISMATCH"),
        Case("jpeg-declared-png", FACE, "photo.jpg", photo, "FILE_CONTENT_MISMATCH", "image/png"),
        Case("truncated-jpeg", FACE, "photo.jpg", photo[: len(photo) // 2], "FILE_CORRUPT"),
        Case("zero-bytes", FACE, "photo.jpg", b"", "FILE_EMPTY"),
        Case("pixel-bomb", FACE, "bomb.png", pixel_bomb(), "IMAGE_TOO_LARGE"),
        Case("no-face", FACE, "noise.jpg", no_face(), "NO_FACE_DETECTED"),
        Case("two-faces", FACE, "pair.jpg", two_faces(), "MULTIPLE_FACES_DETECTED"),
        Case("tiny-image", FACE, "tiny.png", png(portrait().resize((48, 48))), "IMAGE_TOO_SMALL"),
        Case("lying-wav", VOICE_KIND, "voice.wav", lying_wav(), "FILE_CORRUPT"),
        Case("short-audio", VOICE_KIND, "voice.wav", wav(0.2), "AUDIO_TOO_SHORT"),
        Case("silent-audio", VOICE_KIND, "voice.wav", wav(3.0, amplitude=0.0), "AUDIO_SILENT"),
        Case("long-audio", VOICE_KIND, "voice.wav", wav(12.0, rate=8000), "AUDIO_TOO_LONG"),
        Case("low-rate-audio", VOICE_KIND, "voice.wav", wav(3.0, rate=4000), "AUDIO_FORMAT_UNSUPPORTED"),
        Case("header-only-wav", VOICE_KIND, "voice.wav", wav(0.0), "AUDIO_TOO_SHORT"),
        Case("name-traversal", FACE, "../../etc/passwd.jpg", photo, "INVALID_FILENAME"),
        Case("name-nul", FACE, "photo\x00.jpg", photo, "INVALID_FILENAME"),
        Case("name-300-chars", FACE, "a" * 296 + ".jpg", photo, "INVALID_FILENAME"),
        Case("name-rtl-override", FACE, "photo\u202egpj.exe", photo, "INVALID_FILENAME"),
    ]  # fmt: skip
