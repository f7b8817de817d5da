"""The shortcuts that make uploads fast still do the whole job: detection on a shrunk
copy reports boxes in the photo's own pixels, the decode started during the upload
writes exactly what the spooled file would, the one-pass measure agrees with a plain
computation, and a refused voice upload leaves no decoder or safe copy behind."""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import wave
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from libs.common.errors import VidsynthError
from libs.common.rpc_status import error_from_rpc_error
from services.validator import audio, faces
from services.validator.audio_prestart import SNIFF_BYTES, PrestartedDecode
from services.validator.spool import Spool
from tests.support.identities import user_metadata
from tests.validator.corpus import EICAR, FACE, VOICE_KIND, mp3, portrait, wav
from tests.validator.test_corpus import assert_nothing_left
from tests.validator.uploading import files_under, grpc_upload
from vidsynth.v1 import validator_pb2

MIN_FACE_RATIO = 0.08


def box_of(image: Image.Image) -> faces.Box:
    found = faces.detect_faces(image, MIN_FACE_RATIO)
    assert len(found) == 1, found
    return found[0]


def test_face_box_is_in_the_original_photos_pixels():
    small = portrait()
    reference = box_of(small)
    # Four times larger: detection runs on a copy shrunk back to ~800 px, yet the box
    # comes back scaled up, in the big photo's coordinates.
    big = small.resize((small.width * 4, small.height * 4), Image.Resampling.LANCZOS)
    assert faces.detection_copy(big).size[0] <= 1200
    scaled = box_of(big)
    for got, expected in zip(
        (scaled.x, scaled.y, scaled.width, scaled.height),
        (reference.x, reference.y, reference.width, reference.height),
        strict=True,
    ):
        assert abs(got - 4 * expected) <= 0.15 * 4 * reference.width


def test_face_box_follows_the_face_on_a_large_canvas():
    face = portrait().resize((1200, 1200), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (3000, 2000), (90, 100, 110))
    canvas.paste(face, (1500, 500))
    box = box_of(canvas)
    centre_x, centre_y = box.x + box.width / 2, box.y + box.height / 2
    face_box = box_of(face)
    assert abs(centre_x - (1500 + face_box.x + face_box.width / 2)) < 0.2 * face_box.width
    assert abs(centre_y - (500 + face_box.y + face_box.height / 2)) < 0.2 * face_box.height


def write_wav_with_tail(path: Path, seconds: float, rate: int = 22050) -> np.ndarray:
    """A stereo 16-bit WAV whose `data` chunk is followed by a LIST chunk (not audio)."""
    t = np.arange(int(rate * seconds)) / rate
    samples = (
        np.stack([np.sin(2 * np.pi * 220 * t), 0.5 * np.sin(2 * np.pi * 330 * t)], axis=1) * 12000
    ).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    data = bytearray(out.getvalue())
    tail = b"LIST" + (12).to_bytes(4, "little") + b"INFOISFT\x00\x00\x00\x00"
    data[4:8] = (len(data) + len(tail) - 8).to_bytes(4, "little")
    path.write_bytes(bytes(data) + tail)
    return samples


def test_measure_agrees_with_a_plain_computation(tmp_path):
    path = tmp_path / "tone.wav"
    samples = write_wav_with_tail(path, 3.0)
    measured = audio.measure_wav(path)
    as_float = samples.astype(np.float64).ravel()
    expected_dbfs = 20 * math.log10(math.sqrt(float(np.mean(as_float * as_float))) / 32768.0)
    assert measured.sample_rate == 22050 and measured.channels == 2
    assert measured.duration_seconds == pytest.approx(3.0, abs=1e-3)
    assert measured.rms_dbfs == pytest.approx(expected_dbfs, abs=1e-6)  # the LIST tail is not audio
    assert measured.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_measure_of_digital_silence_is_minus_infinity(tmp_path):
    path = tmp_path / "silent.wav"
    path.write_bytes(wav(2.0, amplitude=0.0))
    assert audio.measure_wav(path).rms_dbfs == -math.inf


async def observe_all(early: PrestartedDecode, data: bytes, chunk: int = 64 * 1024) -> None:
    for start in range(0, len(data), chunk):
        await early.observe(data[start : start + chunk])


async def test_early_decode_writes_what_the_file_decode_writes(tmp_path):
    spool = tmp_path / "upload"
    spool.write_bytes(wav(4.0, rate=22050))
    assert spool.stat().st_size > SNIFF_BYTES
    early = PrestartedDecode(tmp_path / "early.wav", max_seconds=10.0)
    await observe_all(early, spool.read_bytes())
    assert early.started and early.demuxer == "wav"
    assert await early.finish(spool, limit_seconds=60)
    await audio.decode_to_wav(spool, "wav", tmp_path / "file.wav", max_seconds=10.0, limit_seconds=60)
    assert (tmp_path / "early.wav").read_bytes() == (tmp_path / "file.wav").read_bytes()


async def test_early_decode_stops_past_the_longest_length(tmp_path):
    spool = tmp_path / "upload"
    spool.write_bytes(wav(30.0, rate=16000))
    early = PrestartedDecode(tmp_path / "early.wav", max_seconds=5.0)
    await observe_all(early, spool.read_bytes())
    assert await early.finish(spool, limit_seconds=60)
    assert 5.5 < audio.measure_wav(tmp_path / "early.wav").duration_seconds < 6.5


async def test_early_decode_waits_for_enough_bytes_and_skips_other_types(tmp_path):
    short = PrestartedDecode(tmp_path / "a.wav", max_seconds=10.0)
    await short.observe(wav(0.5)[: SNIFF_BYTES // 2])
    assert not short.started
    image = PrestartedDecode(tmp_path / "b.wav", max_seconds=10.0)
    await image.observe(bytes(SNIFF_BYTES))
    assert not image.started
    assert not await image.finish(tmp_path / "missing", limit_seconds=5)
    await image.abort()
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "b.wav").exists()


async def test_aborted_early_decode_leaves_no_process(tmp_path):
    early = PrestartedDecode(tmp_path / "early.wav", max_seconds=10.0)
    await early.observe(wav(3.0)[:SNIFF_BYTES])
    assert early.started
    process = early._proc
    await early.abort()
    assert process.poll() is not None
    await early.abort()  # idempotent


async def test_wrong_early_guess_falls_back_to_the_spooled_file(tmp_path, validator_settings):
    """An early decode started as WAV is dropped when the upload turns out to be MP3."""
    early = PrestartedDecode(tmp_path / "copy.wav", max_seconds=10.0)
    await observe_all(early, wav(3.0))
    assert early.demuxer == "wav"
    spool = tmp_path / "upload"
    spool.write_bytes(mp3(3.0))
    facts = await audio.inspect_audio(spool, "audio/mpeg", tmp_path / "copy.wav", validator_settings, early)
    assert early._proc.poll() is not None
    assert 2.5 < facts.duration_seconds < 3.5
    assert facts.safe_copy_sha256 == hashlib.sha256((tmp_path / "copy.wav").read_bytes()).hexdigest()


async def test_spool_hashes_everything_it_was_given(tmp_path):
    data = np.random.default_rng(3).integers(0, 256, 3 * 1024 * 1024 + 17, dtype=np.uint8).tobytes()
    async with Spool(tmp_path, max_bytes=len(data)) as spool:
        for start in range(0, len(data), 100_000):
            await spool.write(data[start : start + 100_000])
        await spool.finish()
        assert spool.size == len(data)
        assert spool.sha256 == hashlib.sha256(data).hexdigest()
        assert spool.path.read_bytes() == data
    assert files_under(tmp_path) == []


async def test_spool_refuses_past_the_cap_and_leaves_nothing(tmp_path):
    with pytest.raises(VidsynthError) as refused:
        async with Spool(tmp_path, max_bytes=1000) as spool:
            await spool.write(b"x" * 600)
            await spool.write(b"x" * 600)
    assert refused.value.code == "FILE_TOO_LARGE"
    assert files_under(tmp_path) == []


async def test_spool_abandoned_mid_write_leaves_nothing(tmp_path):
    async def upload() -> None:
        async with Spool(tmp_path, max_bytes=1 << 30) as spool:
            while True:
                await spool.write(b"y" * 65536)
                await asyncio.sleep(0)

    task = asyncio.create_task(upload())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert files_under(tmp_path) == []


async def test_published_hashes_match_the_stored_files(mesh):
    session_id = await mesh.new_session()
    photo = io.BytesIO()
    portrait().resize((1600, 1600)).save(photo, format="JPEG", quality=90)
    voice = wav(6.0, rate=44100)
    assert len(voice) > SNIFF_BYTES
    for kind, name, data in ((FACE, "me.jpg", photo.getvalue()), (VOICE_KIND, "me.wav", voice)):
        response, code = await grpc_upload(mesh, session_id, kind, name, data)
        assert code is None
        stored = mesh.settings.sessions_dir / session_id / "assets" / response.asset.stored_name
        assert response.asset.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
        assert response.asset.size_bytes == stored.stat().st_size
    assert response.report.duration_seconds == pytest.approx(6.0, abs=0.05)


async def test_infected_voice_is_quarantined_even_after_it_decoded(mesh):
    """The decode starts during the upload and the audio checks pass, but the verdict
    comes first: quarantined, no safe copy, no decoder left writing."""
    session_id = await mesh.new_session()
    data = wav(3.0) + EICAR
    response, code = await grpc_upload(mesh, session_id, VOICE_KIND, "voice.wav", data)
    assert response is None and code == "MALWARE_DETECTED"
    assert_nothing_left(mesh, session_id, code)


async def test_voice_refused_mid_stream_leaves_no_safe_copy(mesh, validator_settings):
    """No size declared: the cap is found mid-stream, after decoding has begun."""
    session_id = await mesh.new_session()
    cap = validator_settings.validator_voice_max_bytes
    data = wav(3.0) + bytes(cap)  # a real WAV first, then past the cap
    header = validator_pb2.UploadHeader(session_id=session_id, kind=VOICE_KIND, original_filename="voice.wav")

    def requests():
        yield validator_pb2.ValidateUploadRequest(header=header)
        for start in range(0, len(data), 256 * 1024):
            yield validator_pb2.ValidateUploadRequest(chunk=data[start : start + 256 * 1024])

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await mesh.validator.ValidateUpload(requests(), metadata=user_metadata("alice"))
    code = error_from_rpc_error(refused.value).code
    assert code == "FILE_TOO_LARGE"
    assert_nothing_left(mesh, session_id, code)


async def test_concurrent_uploads_do_not_starve_each_other(mesh):
    """Each upload keeps a spool writer and a clamd feeder busy for its whole length, on
    threads of their own: eight slow uploads at once (more than the event loop's default
    executor has workers; two users, each within their share) all finish."""
    data = wav(3.0)

    async def slow_upload(session_id: str, user: str):
        header = validator_pb2.UploadHeader(
            session_id=session_id, kind=VOICE_KIND, original_filename="voice.wav", declared_size=len(data)
        )

        async def requests():
            yield validator_pb2.ValidateUploadRequest(header=header)
            for start in range(0, len(data), 8 * 1024):
                await asyncio.sleep(0.02)
                yield validator_pb2.ValidateUploadRequest(chunk=data[start : start + 8 * 1024])

        return await mesh.validator.ValidateUpload(requests(), metadata=user_metadata(user))

    users = ["alice", "bob"] * 4
    session_ids = [await mesh.new_session(user) for user in users]
    uploads = (slow_upload(s, user) for s, user in zip(session_ids, users, strict=True))
    responses = await asyncio.wait_for(asyncio.gather(*uploads), timeout=90)
    assert all(r.report.accepted for r in responses)
