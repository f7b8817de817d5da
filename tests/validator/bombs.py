"""Decompression and CPU bombs, built here byte by byte (no file is downloaded), and the
honest progressive portrait they must not be confused with.

- `scan_bomb`: a progressive JPEG whose last refinement scan is repeated hundreds of
  times. Each repeat is a dozen bytes (one EOB run over the flat image) yet makes the
  decoder walk every block of the image again (libjpeg-turbo's LJT-01-003).
- `padded`: the same trick with fewer scans, padded with comment segments so its size
  looks like a photo's: it passes the scan and expansion limits and only the CPU cap
  (or a kill) stops it.
- `zeros_png`: a 6300x6300 RGBA PNG of zeros, ~150 KB that inflate to ~160 MB.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from tests.validator.corpus import portrait

SOS = 0xDA
EOI = 0xD9
COM = 0xFE
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every segment after SOI; a scan's segment runs to the end
    of its entropy-coded data."""
    found = []
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"no marker at {pos}")
        marker = data[pos + 1]
        if marker == EOI or marker in _STANDALONE:
            found.append((marker, pos, pos + 2))
            if marker == EOI:
                return found
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == SOS:
            while True:
                end = data.index(b"\xff", end)
                following = data[end + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    end += 2
                    continue
                break
        found.append((marker, pos, end))
        pos = end
    raise ValueError("no EOI")


def scan_count(data: bytes) -> int:
    return sum(1 for marker, _, _ in segments(data) if marker == SOS)


def progressive(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality, progressive=True)
    return out.getvalue()


def progressive_portrait() -> bytes:
    """An ordinary progressive JPEG of the sample portrait (Pillow's scan script)."""
    return progressive(portrait())


def scan_bomb(width: int = 4000, height: int = 4000, repeats: int = 400) -> bytes:
    """A flat progressive JPEG with its final refinement scan repeated `repeats` times."""
    data = progressive(Image.new("RGB", (width, height), (120, 130, 140)))
    parts = segments(data)
    _, scan_start, scan_end = [s for s in parts if s[0] == SOS][-1]
    eoi = parts[-1][1]
    return data[:eoi] + data[scan_start:scan_end] * repeats + data[eoi:]


def padded(jpeg: bytes, total_bytes: int) -> bytes:
    """`jpeg` grown to about `total_bytes` with COM segments right after SOI."""
    filler = []
    missing = total_bytes - len(jpeg)
    while missing > 0:
        size = min(missing, 65533)
        filler.append(bytes([0xFF, COM]) + struct.pack(">H", size + 2) + b"x" * size)
        missing -= size + 4
    return jpeg[:2] + b"".join(filler) + jpeg[2:]


def cpu_bomb(repeats: int = 50) -> bytes:
    """A 40 MP flat progressive JPEG with its refinement scan repeated `repeats` times
    (60 scans in all, under the default cap of 64; each costs ~40 ms of CPU here, ~2.5 s
    in all), padded to 2 MB so it is not refused for its expansion either."""
    return padded(scan_bomb(8000, 5000, repeats), 2 * 1024 * 1024)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def zeros_png(side: int = 6300) -> bytes:
    """A valid 8-bit RGBA PNG of side x side zeros, compressed row by row (never held whole)."""
    row = b"\x00" * (1 + side * 4)  # filter byte, then RGBA zeros
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
