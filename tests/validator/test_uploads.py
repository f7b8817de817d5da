"""Accepted uploads: safe copies, registration on the session, replacement; ownership
and size refusals over gRPC and HTTP."""

from __future__ import annotations

import io
import wave

import grpc
import pytest
from PIL import Image

from libs.common.rpc_status import error_from_rpc_error
from tests.support.identities import bearer, user_metadata
from tests.validator.corpus import FACE, PORTRAIT, VOICE, VOICE_KIND, mp3, portrait
from tests.validator.uploading import eventually, files_under, grpc_requests, grpc_upload, http_upload
from vidsynth.v1 import validator_pb2


def rotated_portrait_with_exif() -> bytes:
    """A photo stored turned on its side whose EXIF says "rotate 90° clockwise to view",
    plus a camera tag that must not survive."""
    image = portrait().crop((0, 0, 512, 400)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored pixels need a 90° clockwise turn
    exif[0x010F] = "SecretCameraMaker"
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), quality=92)
    return out.getvalue()


def stored(mesh, session_id, asset):
    return mesh.settings.sessions_dir / session_id / "assets" / asset.stored_name


async def test_portrait_accepted_over_grpc_with_clean_safe_copy(mesh):
    session_id = await mesh.new_session()
    data = rotated_portrait_with_exif()
    response, code = await grpc_upload(mesh, session_id, FACE, "me.jpg", data, "image/jpeg")
    assert code is None
    report = response.report
    assert report.accepted and report.detected_type == "image/jpeg"
    assert report.scan.scanned and report.scan.clean and report.scan.signature_db == "test-signatures"
    # Orientation applied: the pixels are stored 400x512 (turned); the upright photo is 512x400.
    assert (report.width, report.height) == (512, 400)
    assert report.face_box.width > 40 and report.face_box.height > 40
    path = stored(mesh, session_id, response.asset)
    assert path.name.startswith("ast_") and path.suffix == ".jpg"
    with Image.open(path) as safe:
        assert safe.size == (512, 400)
        assert not safe.getexif() and "exif" not in safe.info
    assert b"SecretCameraMaker" not in path.read_bytes()
    session = await mesh.get_session(session_id)
    assert [a.asset_id for a in session.assets] == [response.asset.asset_id]
    assert session.assets[0].report.sha256 == report.sha256


async def test_voice_accepted_over_http_as_pcm_wav(mesh):
    session_id = await mesh.new_session()
    status, body = await http_upload(mesh, session_id, VOICE_KIND, "voice.mp3", mp3(3.0), "audio/mpeg")
    assert status == 201, body
    report = body["report"]
    assert report["detected_type"] == "audio/mpeg" and 2.5 < report["duration_seconds"] < 3.5
    # The stored file's name is internal (the HTTP view leaves it out): ask the session.
    session = await mesh.get_session(session_id)
    [asset] = [a for a in session.assets if a.asset_id == body["asset"]["asset_id"]]
    assert body["asset"]["kind"] == "voice" and isinstance(body["asset"]["size_bytes"], int)
    path = stored(mesh, session_id, asset)
    with wave.open(str(path)) as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1
    assert body["asset"]["content_type"] == "audio/wav"


async def test_samples_accepted_over_http_raw_body(mesh):
    session_id = await mesh.new_session()
    status, body = await http_upload(
        mesh, session_id, FACE, "portrait.jpg", PORTRAIT.read_bytes(), "image/jpeg", raw=True
    )
    assert status == 201, body
    status, body = await http_upload(mesh, session_id, VOICE_KIND, "", VOICE.read_bytes(), raw=True)
    assert status == 201, body
    session = await mesh.get_session(session_id)
    assert {a.kind for a in session.assets} == {FACE, VOICE_KIND}


async def test_reupload_replaces_the_asset_and_its_file(mesh):
    session_id = await mesh.new_session()
    first, _ = await grpc_upload(mesh, session_id, FACE, "a.jpg", PORTRAIT.read_bytes())
    second, _ = await grpc_upload(mesh, session_id, FACE, "b.jpg", rotated_portrait_with_exif())
    session = await mesh.get_session(session_id)
    assert [a.asset_id for a in session.assets] == [second.asset.asset_id]
    assert not stored(mesh, session_id, first.asset).exists()
    assert stored(mesh, session_id, second.asset).exists()
    names = sorted(p.name for p in (mesh.settings.sessions_dir / session_id).rglob("*") if p.is_file())
    assert names == [second.asset.stored_name]


async def test_another_users_session_is_not_found(mesh):
    session_id = await mesh.new_session("bob")
    _, code = await grpc_upload(mesh, session_id, FACE, "a.jpg", PORTRAIT.read_bytes(), user="alice")
    assert code == "SESSION_NOT_FOUND"
    status, body = await http_upload(mesh, session_id, FACE, "a.jpg", PORTRAIT.read_bytes(), user="alice")
    assert (status, body["code"]) == (404, "SESSION_NOT_FOUND")
    assert not (await mesh.get_session(session_id, "bob")).assets


async def test_malformed_session_id_and_kind(mesh):
    _, code = await grpc_upload(mesh, "../../etc", FACE, "a.jpg", b"x")
    assert code == "INVALID_ID"
    response = await mesh.http.post(
        "/v1/sessions/not-an-id/assets/face", content=b"x", headers=bearer("alice")
    )
    assert response.json()["code"] == "INVALID_ID"
    session_id = await mesh.new_session()
    response = await mesh.http.post(
        f"/v1/sessions/{session_id}/assets/exe", content=b"x", headers=bearer("alice")
    )
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_ARGUMENT")
    _, code = await grpc_upload(mesh, session_id, 0, "a.jpg", b"x")
    assert code == "INVALID_ARGUMENT"


async def test_header_must_come_first(mesh):
    session_id = await mesh.new_session()

    def chunk_first():
        yield validator_pb2.ValidateUploadRequest(chunk=b"abc")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mesh.validator.ValidateUpload(chunk_first(), metadata=user_metadata("alice"))
    assert error_from_rpc_error(err.value).code == "INVALID_ARGUMENT"

    def two_headers():
        yield from grpc_requests(session_id, FACE, "a.jpg", b"abc")
        yield validator_pb2.ValidateUploadRequest(header=validator_pb2.UploadHeader(session_id=session_id))

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mesh.validator.ValidateUpload(two_headers(), metadata=user_metadata("alice"))
    assert error_from_rpc_error(err.value).code == "INVALID_ARGUMENT"


async def test_multipart_without_file_field(mesh):
    session_id = await mesh.new_session()
    response = await mesh.http.post(
        f"/v1/sessions/{session_id}/assets/face", files={"other": ("a.jpg", b"x")}, headers=bearer("alice")
    )
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_ARGUMENT")


async def test_unauthenticated(mesh):
    session_id = await mesh.new_session()
    response = await mesh.http.post(f"/v1/sessions/{session_id}/assets/face", content=b"x")
    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHENTICATED")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mesh.validator.ValidateUpload(grpc_requests(session_id, FACE, "a.jpg", b"x"))
    assert error_from_rpc_error(err.value).code == "UNAUTHENTICATED"


class TestOversize:
    async def test_grpc_stream_stops_at_first_byte_over(self, mesh, validator_settings):
        session_id = await mesh.new_session()
        cap = validator_settings.validator_face_max_bytes
        sent = 0

        def requests():
            nonlocal sent
            yield validator_pb2.ValidateUploadRequest(
                header=validator_pb2.UploadHeader(session_id=session_id, kind=FACE, original_filename="a.jpg")
            )
            for _ in range(cap // 65536 + 50):
                sent += 65536
                yield validator_pb2.ValidateUploadRequest(chunk=b"\xff" * 65536)

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await mesh.validator.ValidateUpload(requests(), metadata=user_metadata("alice"))
        refused = error_from_rpc_error(err.value)
        assert refused.code == "FILE_TOO_LARGE"
        assert refused.metadata == {"limit_bytes": str(cap)}
        assert files_under(mesh.settings.sessions_dir / session_id) == []

    async def test_grpc_declared_size_over_cap(self, mesh, validator_settings):
        session_id = await mesh.new_session()
        header = validator_pb2.UploadHeader(
            session_id=session_id, kind=FACE, declared_size=validator_settings.validator_face_max_bytes + 1
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await mesh.validator.ValidateUpload(
                iter([validator_pb2.ValidateUploadRequest(header=header)]), metadata=user_metadata("alice")
            )
        refused = error_from_rpc_error(err.value)
        assert refused.code == "FILE_TOO_LARGE"
        cap = validator_settings.validator_face_max_bytes
        assert refused.metadata == {"declared_size": str(cap + 1), "limit_bytes": str(cap)}

    async def test_http_content_length_over_cap_refused_before_reading(self, mesh, validator_settings):
        session_id = await mesh.new_session()
        read = 0

        async def body():
            nonlocal read
            for _ in range(10):
                read += 1
                yield b"x" * 1024

        headers = {**bearer("alice"), "Content-Length": str(validator_settings.validator_face_max_bytes * 2)}
        response = await mesh.http.post(
            f"/v1/sessions/{session_id}/assets/face", content=body(), headers=headers
        )
        assert (response.status_code, response.json()["code"]) == (413, "FILE_TOO_LARGE")

    async def test_http_chunked_body_over_cap(self, mesh, validator_settings):
        session_id = await mesh.new_session()
        cap = validator_settings.validator_face_max_bytes

        async def body():
            for _ in range(cap // 65536 + 20):
                yield b"\xff" * 65536

        response = await mesh.http.post(
            f"/v1/sessions/{session_id}/assets/face", content=body(), headers=bearer("alice")
        )
        assert (response.status_code, response.json()["code"]) == (413, "FILE_TOO_LARGE")
        # The gateway may answer first; the validator removes its spool as the call ends.
        assert await eventually(lambda: files_under(mesh.settings.sessions_dir / session_id) == [])
