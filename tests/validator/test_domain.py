"""Domain modules on their own: filenames, container ends, type agreement, clamd config."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from libs.common.clamd_link import signature_db_from_version
from libs.common.errors import VidsynthError
from services.validator import images
from services.validator.filenames import check_filename, extension_of
from services.validator.filetype import check_type
from services.validator.scanner import verdict_from_reply
from tests.validator.corpus import FACE, VOICE_KIND, portrait
from vidsynth.cli.clamd import DB_OFFICIAL, DB_TEST, TEST_SIGNATURES, clamd_command


def code_of(call, *args) -> str:
    with pytest.raises(VidsynthError) as err:
        call(*args)
    return err.value.code


@pytest.mark.parametrize("name", ["photo.jpg", "", "my photo (1).JPEG", "ünïcødé.png"])
def test_ordinary_filenames_pass(name):
    assert check_filename(name) == name


@pytest.mark.parametrize(
    "name", ["../a.jpg", "a/b.jpg", "a\\b.jpg", "a\x00.jpg", "a\r\n.jpg", "x" * 256, "a\u202egpj.exe", ".."]
)
def test_deceptive_filenames_refused(name):
    assert code_of(check_filename, name) == "INVALID_FILENAME"


def test_extension_is_lower_case_last_suffix():
    assert extension_of("a.tar.JPG") == ".jpg" and extension_of("noext") == ""


def test_type_agreement():
    assert check_type(FACE, "image/png", "a.png", "image/png").canonical == "image/png"
    assert check_type(FACE, "image/jpeg", "", "application/octet-stream").canonical == "image/jpeg"
    assert check_type(VOICE_KIND, "audio/x-wav", "a.WAV", "audio/wav; codecs=1").canonical == "audio/wav"
    assert code_of(check_type, FACE, "image/png", "a.jpg", "") == "FILE_CONTENT_MISMATCH"
    assert code_of(check_type, FACE, "image/png", "a.png", "image/jpeg") == "FILE_CONTENT_MISMATCH"
    assert code_of(check_type, FACE, "audio/x-wav", "a.wav", "") == "FILE_TYPE_NOT_ALLOWED"
    assert code_of(check_type, FACE, "image/svg+xml", "a.svg", "") == "FILE_TYPE_NOT_ALLOWED"


def _jpeg(**save_args) -> bytes:
    out = io.BytesIO()
    portrait().save(out, format="JPEG", **save_args)
    return out.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        _jpeg(quality=90),
        _jpeg(progressive=True, quality=80),
        # An EXIF block carrying its own JPEG thumbnail (an EOI inside APP1) is not a tail.
        _jpeg(exif=Image.Exif().tobytes() + b"\xff\xd8" + b"thumb" + b"\xff\xd9"),
    ],
    ids=["baseline", "progressive", "exif-with-eoi"],
)
def test_jpeg_end_found_exactly(data):
    assert images.jpeg_end(data) == len(data)
    assert code_of(images.jpeg_end, data[:-2]) == "FILE_CORRUPT"


def test_webp_and_png_ends():
    out = io.BytesIO()
    portrait().save(out, format="WEBP")
    webp = out.getvalue()
    assert images.webp_end(webp) == len(webp)
    assert code_of(images.webp_end, webp[:-10]) == "FILE_CORRUPT"
    out = io.BytesIO()
    portrait().save(out, format="PNG")
    png = out.getvalue()
    assert images.png_end(png) == len(png)
    assert code_of(images.png_end, png[:-5]) == "FILE_CORRUPT"


def test_clamd_uses_test_signatures_without_official_db(tmp_path):
    argv, address, kind = clamd_command(tmp_path / "var", tcp_port=3999, official_db_dir=tmp_path / "none")
    assert kind == DB_TEST and address == "tcp:127.0.0.1:3999"
    conf = (tmp_path / "var" / "clamd" / "clamd.conf").read_text()
    assert argv == ["clamd", f"--config-file={tmp_path / 'var' / 'clamd' / 'clamd.conf'}"]
    assert "Foreground yes" in conf and "TCPAddr 127.0.0.1" in conf and "AlertExceedsMax yes" in conf
    db_dir = tmp_path / "var" / "clamd" / "db"
    assert f"DatabaseDirectory {db_dir}" in conf
    assert (db_dir / TEST_SIGNATURES.name).read_text() == TEST_SIGNATURES.read_text()


def test_clamd_prefers_official_db(tmp_path):
    official = tmp_path / "clamav"
    official.mkdir()
    (official / "daily.cvd").write_bytes(b"stand-in")
    _, address, kind = clamd_command(tmp_path / "v", official_db_dir=official)
    assert kind == DB_OFFICIAL and address.startswith("unix:")
    assert f"DatabaseDirectory {official}" in (tmp_path / "v" / "clamd" / "clamd.conf").read_text()


def test_scan_replies():
    assert verdict_from_reply("OK", "").clean
    assert verdict_from_reply("FOUND", "Eicar-Signature").signature == "Eicar-Signature"
    limited = verdict_from_reply("FOUND", "Heuristics.Limits.Exceeded.MaxFileSize")
    assert not limited.clean and not limited.signature and limited.error
    assert not verdict_from_reply("ERROR", "INSTREAM size limit exceeded").clean
    assert signature_db_from_version("ClamAV 1.4.6/27500/Mon Nov 23") == "official"
    assert signature_db_from_version("ClamAV 1.4.6") == "test-signatures"
