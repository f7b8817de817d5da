"""The hostile corpus: each upload earns its exact catalogued code over gRPC and HTTP,
never a 5xx, and nothing of it survives outside quarantine."""

from __future__ import annotations

import pytest

from libs.common.errors import CATALOG
from tests.validator.corpus import refusal_cases
from tests.validator.uploading import files_under, grpc_upload, http_upload

CASES = refusal_cases()


def assert_nothing_left(mesh, session_id: str, code: str) -> None:
    data_dir = mesh.settings.data_dir
    session_root = mesh.settings.sessions_dir / session_id
    assert files_under(session_root) == [], "a refused upload left files in the session"
    quarantined = files_under(data_dir / "quarantine")
    if code == "MALWARE_DETECTED":
        assert {p.name for p in quarantined} == {"payload.bin", "report.json"}
    else:
        assert quarantined == []
    # Nothing escapes the data dir: beside it there is nothing, inside it only the
    # services' own databases and the quarantine.
    assert [p.name for p in data_dir.parent.iterdir()] == [data_dir.name]
    stray = [p for p in files_under(data_dir) if "quarantine" not in p.parts and ".sqlite3" not in p.name]
    assert stray == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_grpc_refuses_with_exact_code(mesh, case):
    session_id = await mesh.new_session()
    response, code = await grpc_upload(
        mesh, session_id, case.kind, case.filename, case.data, case.content_type
    )
    assert response is None
    assert code == case.code
    assert_nothing_left(mesh, session_id, case.code)
    assert not (await mesh.get_session(session_id)).assets


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_http_refuses_with_exact_code(mesh, case):
    session_id = await mesh.new_session()
    status, body = await http_upload(mesh, session_id, case.kind, case.filename, case.data, case.content_type)
    assert body["code"] == case.code, body
    assert status == CATALOG[case.code].http_status < 500
    assert_nothing_left(mesh, session_id, case.code)
