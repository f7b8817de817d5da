"""Image checks: the container must end where its format says (no polyglot tail, no
truncation), and before any pixel is decoded the header's dimensions, a JPEG's number
of scans and the decoded size per byte of file are bounded; then the whole image
decodes with Pillow restricted to the allowed formats. Blocking, and meant to run in
a decode worker process (decode_worker.py), where CPU time and memory are capped too."""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import struct
from pathlib import Path

from PIL import Image, ImageOps

from libs.common.errors import VidsynthError
from services.validator.decode_limits import DecodeLimits

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG markers without a length field: TEM, RSTn, SOI, EOI.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xDA)}
SAFE_COPY_CONTENT_TYPE = "image/jpeg"
SAFE_COPY_SUFFIX = ".jpg"
SAFE_COPY_QUALITY = 90
# Pillow decoders allowed to touch an upload (Pillow otherwise tries every plugin).
PILLOW_FORMATS = ("JPEG", "PNG", "WEBP")
MB = 1024 * 1024


def _corrupt(detail: str) -> VidsynthError:
    return VidsynthError("FILE_CORRUPT", detail)


def _polyglot() -> VidsynthError:
    return VidsynthError(
        "FILE_CONTENT_MISMATCH", "The image carries extra data after its end; it is refused as a polyglot."
    )


def png_end(data: bytes | mmap.mmap) -> int:
    """Offset just past the IEND chunk."""
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        chunk_type = bytes(data[pos + 4 : pos + 8])
        pos += 12 + length
        if pos > len(data):
            break
        if chunk_type == b"IEND":
            return pos
    raise _corrupt("The PNG image is truncated.")


def jpeg_end(data: bytes | mmap.mmap) -> int:
    """Offset just past the EOI marker, walking segments and entropy-coded scans."""
    return jpeg_layout(data, max_scans=None)[0]


def jpeg_layout(data: bytes | mmap.mmap, max_scans: int | None) -> tuple[int, int]:
    """(offset just past EOI, number of scans). IMAGE_TOO_COMPLEX as soon as there are
    more than `max_scans` scans: each one makes the decoder pass over the whole image
    again, so a few bytes of repeated refinement scans cost minutes of CPU (LJT-01-003)."""
    size = len(data)
    pos = 2
    scans = 0
    while pos + 1 < size:
        if data[pos] != 0xFF:
            raise _corrupt("The JPEG image is damaged.")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return pos + 2, scans
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > size:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
        if marker == 0xDA:
            scans += 1
            if max_scans is not None and scans > max_scans:
                raise VidsynthError(
                    "IMAGE_TOO_COMPLEX",
                    f"The JPEG image has more than {max_scans} scans; it would take too long to decode.",
                )
            pos = _end_of_scan(data, pos)
    raise _corrupt("The JPEG image is truncated.")


def _end_of_scan(data: bytes | mmap.mmap, pos: int) -> int:
    """Offset of the first marker after entropy-coded data (0xFF00 is stuffing, RSTn stays in)."""
    size = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= size:
            return size
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1
            continue
        return pos


def webp_end(data: bytes | mmap.mmap) -> int:
    if len(data) < 12:
        raise _corrupt("The WebP image is truncated.")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size + (riff_size & 1)
    if end > len(data):
        raise _corrupt("The WebP image is truncated.")
    return end


_END_FINDERS = {"image/png": png_end, "image/webp": webp_end}


def check_container(path: Path, detected: str, limits: DecodeLimits) -> None:
    """Blocking: FILE_CORRUPT when truncated, a polyglot refusal when data follows the end,
    IMAGE_TOO_COMPLEX for a JPEG with too many scans."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if detected == "image/jpeg":
            end, _scans = jpeg_layout(data, limits.max_scans)
        else:
            end = _END_FINDERS[detected](data)
        if end < len(data):
            raise _polyglot()


def check_dimensions(width: int, height: int, limits: DecodeLimits) -> None:
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise VidsynthError(
            "IMAGE_TOO_LARGE",
            f"The image is {width}x{height}; at most {limits.max_side} px a side and "
            f"{limits.max_pixels:,} pixels are allowed.",
        )
    if min(width, height) < limits.min_side:
        raise VidsynthError(
            "IMAGE_TOO_SMALL",
            f"The image is {width}x{height}; at least {limits.min_side} px a side is needed.",
        )


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """What Pillow allocates for the decoded pixels: 1 byte a pixel for 1/L/P, 2 for
    16-bit grey, 4 for every other mode (RGB is stored padded to 4 bytes)."""
    per_pixel = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    return width * height * per_pixel


def check_expansion(width: int, height: int, mode: str, file_size: int, limits: DecodeLimits) -> None:
    """IMAGE_TOO_COMPLEX when a small file would inflate to far more memory than photos do
    (a PNG of zeros: 150 KB in, 160 MB out); small images are exempt whatever their ratio."""
    decoded = decoded_bytes(width, height, mode)
    if decoded > limits.expansion_free_bytes and decoded > file_size * limits.max_expansion:
        raise VidsynthError(
            "IMAGE_TOO_COMPLEX",
            f"The {width}x{height} image would decode to {decoded / MB:.0f} MB from a "
            f"{file_size / 1024:.0f} KB file, more than {limits.max_expansion:g} times its size.",
        )


def decode_image(path: Path, detected: str, limits: DecodeLimits) -> Image.Image:
    """Blocking: the fully decoded image, upright (EXIF orientation applied), in RGB."""
    try:
        with Image.open(path, formats=PILLOW_FORMATS) as img:
            # The header alone says how big the pixel buffer would be: check before decoding.
            check_dimensions(img.width, img.height, limits)
            check_container(path, detected, limits)
            check_expansion(img.width, img.height, img.mode, path.stat().st_size, limits)
            img.load()
            # In place: a 40 MP photo is not copied just to learn it was already upright.
            ImageOps.exif_transpose(img, in_place=True)
            if img.mode == "RGB":
                return img
            if img.mode in ("RGBA", "LA", "P", "PA"):
                rgba = img.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                return flat
            return img.convert("RGB")
    except VidsynthError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fires in open() for headers far beyond any sane size.
        raise VidsynthError("IMAGE_TOO_LARGE", "The image declares far more pixels than allowed.") from exc
    except MemoryError as exc:
        raise VidsynthError(
            "IMAGE_TOO_COMPLEX", "The image needs more memory to decode than allowed."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise _corrupt("The image could not be decoded; it is damaged or incomplete.") from exc


def encode_safe_copy(image: Image.Image, out_path: Path) -> str:
    """Blocking: writes a re-encoded JPEG with no metadata at all (EXIF, ICC, comments
    dropped) to `out_path` (a new 0600 file, flushed to disk); returns its sha256.
    Baseline at quality 90: no extra optimize/progressive passes."""
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=SAFE_COPY_QUALITY)
    encoded = out.getvalue()
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(encoded)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(encoded).hexdigest()
