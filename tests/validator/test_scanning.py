"""clamd policies, the stream limit, quarantine listing and the published policy."""

from __future__ import annotations

import json

import grpc
import pytest

from libs.common.rpc_status import error_from_rpc_error
from tests.support.identities import bearer, user_metadata
from tests.support.ports import free_port
from tests.validator.conftest import Mesh, validator_settings_for
from tests.validator.corpus import EICAR, FACE, PORTRAIT, VOICE, VOICE_KIND
from tests.validator.uploading import files_under, grpc_upload, http_upload
from vidsynth.v1 import validator_pb2


async def start_mesh(in_process_mesh, **overrides) -> Mesh:
    clamd = overrides.pop("clamd")
    return await Mesh(in_process_mesh).start(validator_settings_for(clamd, **overrides))


async def test_scanner_down_and_required_fails_closed(in_process_mesh):
    mesh = await start_mesh(in_process_mesh, clamd=f"tcp:127.0.0.1:{free_port()}")
    try:
        session_id = await mesh.new_session()
        _, code = await grpc_upload(mesh, session_id, FACE, "a.jpg", PORTRAIT.read_bytes())
        assert code == "SCAN_UNAVAILABLE"
        status, body = await http_upload(mesh, session_id, FACE, "a.jpg", PORTRAIT.read_bytes())
        assert (status, body["code"]) == (503, "SCAN_UNAVAILABLE")
        assert files_under(mesh.settings.sessions_dir / session_id) == []
        policy = await mesh.validator.GetUploadPolicy(
            validator_pb2.GetUploadPolicyRequest(), metadata=user_metadata("alice")
        )
        assert not policy.scanner_available and policy.scan_policy == validator_pb2.SCAN_POLICY_REQUIRED
    finally:
        await mesh.close()


async def test_scanner_down_and_optional_accepts_with_warning(in_process_mesh):
    mesh = await start_mesh(
        in_process_mesh, clamd=f"tcp:127.0.0.1:{free_port()}", validator_scan_policy="optional"
    )
    try:
        session_id = await mesh.new_session()
        response, code = await grpc_upload(mesh, session_id, VOICE_KIND, "v.wav", VOICE.read_bytes())
        assert code is None
        assert not response.report.scan.scanned and response.report.scan.engine == "none"
        assert any("not scanned" in w for w in response.report.warnings)
    finally:
        await mesh.close()


async def test_stream_limit_is_an_error_never_clean(in_process_mesh, small_stream_clamd_address):
    mesh = await start_mesh(in_process_mesh, clamd=small_stream_clamd_address)
    try:
        session_id = await mesh.new_session()
        big_but_allowed = VOICE.read_bytes() * 6  # ~1.7 MB: under the upload cap, over clamd's 1 MB
        _, code = await grpc_upload(mesh, session_id, VOICE_KIND, "v.wav", big_but_allowed)
        assert code == "SCAN_FAILED"
        status, body = await http_upload(mesh, session_id, VOICE_KIND, "v.wav", big_but_allowed)
        assert (status, body["code"]) == (422, "SCAN_FAILED")
        assert files_under(mesh.settings.sessions_dir / session_id) == []
    finally:
        await mesh.close()


async def test_quarantine_report_and_admin_listing(mesh):
    session_id = await mesh.new_session()
    _, code = await grpc_upload(mesh, session_id, FACE, "holiday.jpg", PORTRAIT.read_bytes() + EICAR)
    assert code == "MALWARE_DETECTED"
    root = mesh.settings.data_dir / "quarantine"
    assert root.stat().st_mode & 0o777 == 0o700
    (entry,) = list(root.iterdir())
    assert entry.stat().st_mode & 0o777 == 0o700
    report = json.loads((entry / "report.json").read_text())
    assert report["user_id"] == "alice" and report["session_id"] == session_id
    assert report["signature"].startswith("Vidsynth.Test.EICAR")
    assert report["reason_code"] == "MALWARE_DETECTED" and len(report["sha256"]) == 64
    assert (entry / "payload.bin").read_bytes().endswith(EICAR)

    listing = await mesh.validator.ListQuarantine(
        validator_pb2.ListQuarantineRequest(), metadata=user_metadata("root")
    )
    assert [e.quarantine_id for e in listing.entries] == [report["quarantine_id"]]
    assert listing.entries[0].original_filename == "holiday.jpg"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mesh.validator.ListQuarantine(
            validator_pb2.ListQuarantineRequest(), metadata=user_metadata("alice")
        )
    assert error_from_rpc_error(err.value).code == "PERMISSION_DENIED"


async def test_quarantine_pagination(mesh):
    session_id = await mesh.new_session()
    for i in range(3):
        _, code = await grpc_upload(mesh, session_id, FACE, f"{i}.jpg", EICAR + bytes([i]))
        assert code == "MALWARE_DETECTED"
    seen, token = [], ""
    while True:
        page = await mesh.validator.ListQuarantine(
            validator_pb2.ListQuarantineRequest(page_size=2, page_token=token), metadata=user_metadata("root")
        )
        seen += [e.quarantine_id for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 3
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mesh.validator.ListQuarantine(
            validator_pb2.ListQuarantineRequest(page_token="bogus"), metadata=user_metadata("root")
        )
    assert error_from_rpc_error(err.value).code == "INVALID_ARGUMENT"


async def test_upload_policy_over_grpc_and_http(mesh, validator_settings):
    policy = await mesh.validator.GetUploadPolicy(
        validator_pb2.GetUploadPolicyRequest(), metadata=user_metadata("alice")
    )
    assert policy.scanner_available and policy.signature_db == "test-signatures"
    face = next(k for k in policy.kinds if k.kind == FACE)
    assert face.max_bytes == validator_settings.validator_face_max_bytes
    assert ".jpg" in face.allowed_extensions and "image/png" in face.allowed_content_types
    response = await mesh.http.get("/v1/upload-policy", headers=bearer("alice"))
    assert response.status_code == 200
    body = response.json()
    assert body["signature_db"] == "test-signatures" and body["scanner_available"] is True
    assert {k["kind"] for k in body["kinds"]} == {"face", "voice"}
    assert all(isinstance(k["max_bytes"], int) for k in body["kinds"])
    assert (await mesh.http.get("/v1/upload-policy")).json()["code"] == "UNAUTHENTICATED"
