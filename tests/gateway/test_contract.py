"""Issue 18: the OpenAPI document is a contract a client generator can use, and the gateway
keeps it (in-process: a real SessionService and the app over ASGI)."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from libs.common.enums import enum_label
from libs.common.errors import CATALOG
from scripts.gen_route_table import README, render_readme
from services.gateway import api_enums
from services.gateway.app import create_app
from services.gateway.contract import PROBLEM_CONTENT_TYPE
from services.gateway.json_body import lone_surrogate_field
from services.gateway.routes_outputs import range_refusal
from tests.gateway.problems import assert_problem
from tests.support.identities import bearer
from vidsynth.v1 import common_pb2, session_pb2, stage_runner_pb2, validator_pb2

SESSION = "ses_0123456789abcdef01234567"


@pytest.fixture
def spec(mesh_settings) -> dict:
    return create_app(mesh_settings).openapi()


def operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_no_validation_422_and_every_problem_response_is_generated_from_the_catalog(spec):
    """FastAPI's 422 (never sent) is gone; a 422 left is a catalogued refusal (NO_FACE_DETECTED...)."""
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, operation in operations(spec):
        problem_statuses = 0
        for status, response in operation["responses"].items():
            content = response.get("content", {})
            if PROBLEM_CONTENT_TYPE not in content:
                continue
            problem_statuses += 1
            [base, narrowed] = content[PROBLEM_CONTENT_TYPE]["schema"]["allOf"]
            assert base == {"$ref": "#/components/schemas/Problem"}
            codes = narrowed["properties"]["code"]["enum"]
            assert codes and all(CATALOG[code].http_status == int(status) for code in codes), (path, status)
        assert problem_statuses >= 1, (path, method)


def test_the_upload_documents_its_422s_as_catalogued_problems(spec):
    upload = spec["paths"]["/v1/sessions/{session_id}/assets/{kind}"]["post"]
    codes = upload["responses"]["422"]["content"][PROBLEM_CONTENT_TYPE]["schema"]["allOf"][1]
    assert {"NO_FACE_DETECTED", "MALWARE_DETECTED", "FILE_CORRUPT"} <= set(
        codes["properties"]["code"]["enum"]
    )


def test_every_v1_operation_but_health_needs_the_bearer_scheme(spec):
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, method, operation in operations(spec):
        names = {name for requirement in operation.get("security", []) for name in requirement}
        if path.startswith("/v1/") and path != "/v1/health":
            assert "bearer" in names, (path, method)
            assert "401" in operation["responses"], (path, method)
        else:
            assert not names, (path, method)
    events = spec["paths"]["/v1/sessions/{session_id}/events"]["get"]
    assert events["security"] == [{"bearer": []}, {"streamToken": []}]


def test_ids_kinds_and_output_names_are_constrained(spec):
    params = {
        (path, p["name"]): p["schema"] for path, _, op in operations(spec) for p in op.get("parameters", [])
    }
    assert params[("/v1/sessions/{session_id}", "session_id")]["pattern"] == "^ses_[0-9a-f]{24}$"
    assert params[("/v1/jobs/{job_id}", "job_id")]["pattern"] == "^job_[0-9a-f]{24}$"
    schemas = spec["components"]["schemas"]
    assert schemas["AssetKind"]["enum"] == ["face", "voice"]
    assert set(schemas["OutputName"]["enum"]) == {
        "video",
        "thumbnail",
        "audio",
        "script",
        "captions",
        "captions_srt",
    }
    # No parameter is nullable: a header or query value is a string, never JSON null.
    assert not [key for key, schema in params.items() if "anyOf" in schema]


def test_bodies_and_media_types_the_framework_cannot_infer(spec):
    paths = spec["paths"]
    upload = paths["/v1/sessions/{session_id}/assets/{kind}"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"]["required"] == ["file"]
    assert upload["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert upload["application/octet-stream"]["schema"]["format"] == "binary"
    download = paths["/v1/jobs/{job_id}/outputs/{name}"]["get"]["responses"]
    assert {"video/mp4", "image/jpeg", "text/vtt"} <= set(download["200"]["content"])
    assert "Content-Range" in download["206"]["headers"] and "416" in download
    events = paths["/v1/sessions/{session_id}/events"]["get"]["responses"]["200"]["content"]
    frame = events["text/event-stream"]["schema"]
    assert set(frame["properties"]["event"]["enum"]) >= {"job.queued", "stage.progress", "error"}
    assert "ProgressEvent" in json.dumps(frame["properties"]["data"])
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert {"ProgressEvent", "StreamError", "Problem"} <= set(spec["components"]["schemas"])
    assert "WebSocket" in spec["info"]["description"]


def test_success_answers_are_typed_models(spec):
    typed = {
        ("/v1/sessions", "post", "201"): "Session",
        ("/v1/sessions/{session_id}/jobs", "post", "202"): "Job",
        ("/v1/jobs/{job_id}", "get", "200"): "Job",
        ("/v1/capabilities", "get", "200"): "Capabilities",
        ("/v1/sessions/{session_id}/jobs:estimate", "post", "200"): "Estimate",
        ("/v1/upload-policy", "get", "200"): "UploadPolicy",
        ("/v1/sessions/{session_id}/assets/{kind}", "post", "201"): "UploadResult",
    }
    for (path, method, status), model in typed.items():
        content = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{model}"}
    job = spec["components"]["schemas"]["Job"]["properties"]
    assert job["state"] == {"$ref": "#/components/schemas/JobState"}
    assert spec["components"]["schemas"]["StageState"]["properties"]["stage"] == {
        "$ref": "#/components/schemas/StageName"
    }


@pytest.mark.parametrize(
    ("enum", "proto", "skip"),
    [
        (api_enums.SessionState, session_pb2.SessionState, ()),
        (api_enums.JobState, common_pb2.JobState, ()),
        (api_enums.StageName, common_pb2.Stage, ()),
        (api_enums.StageStatus, common_pb2.StageStatus, ()),
        (api_enums.ProcessingMode, common_pb2.ProcessingMode, ()),
        (api_enums.BackendKind, stage_runner_pb2.BackendKind, ()),
        (api_enums.ScanPolicy, validator_pb2.ScanPolicy, ()),
    ],
)
def test_enums_spell_every_proto_value(enum, proto, skip):
    labels = {enum_label(proto, value) for value in proto.values() if value} - set(skip)
    assert {member.value for member in enum} == labels


def test_readme_route_table_is_generated_from_the_spec():
    text = README.read_text(encoding="utf-8")
    assert text == render_readme(text), "run `python -m scripts.gen_route_table`"
    assert "| GET | `/v1/sessions/{session_id}/jobs` |" in text


async def test_an_undeclared_method_is_405_with_allow_before_any_id_check(client):
    for path, allowed in [
        ("/v1/sessions/not-an-id", "DELETE, GET"),
        (f"/v1/sessions/{SESSION}", "DELETE, GET"),
        ("/v1/sessions", "GET, POST"),
        ("/v1/capabilities/mode", "PUT"),
    ]:
        response = await client.request("TRACE", path, headers=bearer("alice"))
        assert_problem(response, 405, "METHOD_NOT_ALLOWED")
        assert response.headers["allow"] == allowed
    # A method the path has still gets the id check.
    assert_problem(await client.get("/v1/sessions/not-an-id", headers=bearer("alice")), 400, "INVALID_ID")


async def test_cors_preflight_allows_every_documented_method(client, spec):
    for path, method, _ in operations(spec):
        concrete = path.replace("{session_id}", SESSION).replace("{job_id}", "job_" + "0" * 24)
        concrete = concrete.replace("{kind}", "face").replace("{name}", "video")
        response = await client.options(
            concrete,
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": method.upper()},
        )
        assert response.status_code == 200, (path, method, response.text)
        assert method.upper() in response.headers["access-control-allow-methods"]


def test_websocket_from_a_foreign_origin_is_refused(mesh_settings, gateway_settings):
    app = create_app(mesh_settings, gateway_settings)
    url = f"/v1/sessions/{SESSION}/ws"
    with TestClient(app) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as refused,
            client.websocket_connect(url, headers={"Origin": "https://evil.example"}),
        ):
            pass
        assert refused.value.status_code == 403
        assert refused.value.json()["code"] == "ORIGIN_NOT_ALLOWED"
        # The allowlisted origin and the gateway's own get past the origin check (to the
        # authentication, which fails here for want of a key).
        for origin in ("https://app.example", "http://testserver"):
            with (
                pytest.raises(WebSocketDenialResponse) as unauthenticated,
                client.websocket_connect(url, headers={"Origin": origin}),
            ):
                pass
            assert unauthenticated.value.json()["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("route", ["jobs", "jobs:estimate"])
@pytest.mark.parametrize(
    "body",
    [b'{"script_text": "\\ud800 hello"}', b'{"script_text": "ok", "tone": "\\udfff"}', b'{"\\ud800": 1}'],
)
async def test_a_lone_surrogate_is_400_invalid_argument(client, route, body):
    response = await client.post(
        f"/v1/sessions/{SESSION}/{route}",
        content=body,
        headers={**bearer("alice"), "Content-Type": "application/json"},
    )
    problem = assert_problem(response, 400, "INVALID_ARGUMENT")
    assert "surrogate" in problem["errors"][0]["description"]


async def test_a_body_that_is_not_utf8_is_malformed_json(client):
    response = await client.post(
        "/v1/sessions",
        content=b'{"display_name": "\xff"}',
        headers={**bearer("alice"), "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "MALFORMED_JSON")


def test_lone_surrogates_are_found_anywhere_and_pairs_are_fine():
    assert lone_surrogate_field({"a": ["x", {"b": "\udc00"}]}) == "a.1.b"
    assert lone_surrogate_field({"a": "\U0001f600 emoji"}) is None


def test_range_refusals_use_the_file_responses_own_parser(tmp_path):
    from fastapi.responses import FileResponse

    path = tmp_path / "video.mp4"
    path.write_bytes(b"x" * 100)
    response = FileResponse(path, stat_result=path.stat(), headers={"ETag": '"abc"'})
    assert range_refusal(response, "bytes=0-9", None, 100) is False
    assert range_refusal(response, None, None, 100) is False
    assert range_refusal(response, "bytes=100-", None, 100).code == "RANGE_NOT_SATISFIABLE"
    # Malformed (RFC 9110 lets a server ignore it): True, the whole file is sent.
    assert range_refusal(response, "bytes=9-2", None, 100) is True
    assert range_refusal(response, "items=0-1", None, 100) is True
    # A stale If-Range means the whole file, so the Range is not refused.
    assert range_refusal(response, "bytes=100-", '"old"', 100) is False
