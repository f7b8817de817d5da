"""Image checks: the container must end where its format says (no polyglot tail, no
truncation), the header's dimensions are bounded before any pixel is decoded, and
the whole image decodes with Pillow restricted to the allowed formats."""

from __future__ import annotations

import hashlib
import io
import mmap
import struct
from pathlib import Path

from PIL import Image, ImageOps

from libs.common.errors import VidsynthError
from services.validator.config import ValidatorSettings
from services.validator.policy import PILLOW_FORMATS

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG markers without a length field: TEM, RSTn, SOI, EOI.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xDA)}
SAFE_COPY_CONTENT_TYPE = "image/jpeg"
SAFE_COPY_SUFFIX = ".jpg"
SAFE_COPY_QUALITY = 90


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
    size = len(data)
    pos = 2
    while pos + 1 < size:
        if data[pos] != 0xFF:
            raise _corrupt("The JPEG image is damaged.")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return pos + 2
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > size:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
        if marker == 0xDA:
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


_END_FINDERS = {"image/png": png_end, "image/jpeg": jpeg_end, "image/webp": webp_end}


def check_container_end(path: Path, detected: str) -> None:
    """Blocking: FILE_CORRUPT when truncated, a polyglot refusal when data follows the end."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        end = _END_FINDERS[detected](data)
        if end < len(data):
            raise _polyglot()


def check_dimensions(width: int, height: int, settings: ValidatorSettings) -> None:
    if width * height > settings.validator_image_max_pixels or max(width, height) > (
        settings.validator_image_max_side
    ):
        raise VidsynthError(
            "IMAGE_TOO_LARGE",
            f"The image is {width}x{height}; at most {settings.validator_image_max_side} px a side and "
            f"{settings.validator_image_max_pixels:,} pixels are allowed.",
        )
    if min(width, height) < settings.validator_image_min_side:
        raise VidsynthError(
            "IMAGE_TOO_SMALL",
            f"The image is {width}x{height}; at least {settings.validator_image_min_side} px a side is needed.",
        )


def decode_image(path: Path, detected: str, settings: ValidatorSettings) -> Image.Image:
    """Blocking: the fully decoded image, upright (EXIF orientation applied), in RGB."""
    try:
        with Image.open(path, formats=PILLOW_FORMATS) as img:
            # The header alone says how big the pixel buffer would be: check before decoding.
            check_dimensions(img.width, img.height, settings)
            check_container_end(path, detected)
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
    except (OSError, SyntaxError, ValueError) as exc:
        raise _corrupt("The image could not be decoded; it is damaged or incomplete.") from exc


def encode_safe_copy(image: Image.Image) -> tuple[bytes, str]:
    """Blocking: a re-encoded JPEG with no metadata at all (EXIF, ICC, comments dropped),
    and its sha256. Baseline at quality 90: no extra optimize/progressive passes."""
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=SAFE_COPY_QUALITY)
    encoded = out.getvalue()
    return encoded, hashlib.sha256(encoded).hexdigest()
