"""Issue 18: a TypeScript client generated from the live /openapi.json proves the contract.

openapi-typescript writes the types from the running gateway's document, `tsc --noEmit`
(strict) checks flow.ts against them, and the compiled flow runs against a real mesh:
a session, both files as multipart, a job, its SSE stream to the end, the video with a
Range request, and a problem+json error read by its code. The plain `openapi-typescript`
output (what a frontend team would run) has no `unknown` for any JSON body.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent
ROOT = HERE.parents[1]
BIN = HERE / "node_modules" / ".bin"
NODE_TIMEOUT_SECONDS = 240
# `unknown` as a TypeScript type (not the enum word "unknown" in quotes).
UNKNOWN_TYPE = re.compile(r"(?<![\"'\w])unknown(?![\"'\w])")
HEADER_INDEX = "[name: string]: unknown;"


def run(*args: str, timeout: float = NODE_TIMEOUT_SECONDS, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(
        args, cwd=HERE, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    assert completed.returncode == 0, f"{args}:\n{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
    return completed.stdout


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    assert (BIN / "tsc").exists(), "run: npm ci --prefix tests/ts_client (scripts/setup.sh does)"
    process = MeshProcess(
        tmp_path_factory.mktemp("ts-client") / "var", extra_env={"VIDSYNTH_PROCESSING_MODE": "simulation"}
    )
    process.wait_up(120)
    yield process
    process.stop()


def json_body_types(declarations: str) -> list[str]:
    """Lines typing a JSON request or response body (application/json, +json)."""
    return [
        line for line in declarations.splitlines() if re.search(r'"application/(?:[\w.-]+\+)?json"', line)
    ]


def test_plain_openapi_typescript_output_has_no_unknown_json_body(mesh, tmp_path):
    out = tmp_path / "plain.d.ts"
    run(str(BIN / "openapi-typescript"), f"{mesh.url}/openapi.json", "--output", str(out))
    declarations = out.read_text()
    bodies = json_body_types(declarations)
    assert len(bodies) > 40, "the JSON bodies of every operation"
    assert not [line for line in bodies if UNKNOWN_TYPE.search(line)]
    # Beyond the headers' open index signature, `unknown` appears in no type at all.
    code = [
        line.strip() for line in declarations.splitlines() if not line.strip().startswith(("*", "/*", "//"))
    ]
    rest = [line for line in code if UNKNOWN_TYPE.search(line)]
    assert set(rest) <= {HEADER_INDEX}, sorted(set(rest) - {HEADER_INDEX})


def test_generated_client_type_checks_and_runs_the_whole_flow(mesh):
    generated = HERE / "generated"
    generated.mkdir(exist_ok=True)
    run("node", "generate.mjs", f"{mesh.url}/openapi.json", str(generated / "api.d.ts"), "--blob")
    run(str(BIN / "tsc"), "--noEmit", "-p", "tsconfig.json")
    run(str(BIN / "tsc"), "-p", "tsconfig.json")
    env = {
        **os.environ,
        "BASE_URL": mesh.url,
        "API_KEY": API_KEYS["alice"],
        "FACE_FILE": str(ROOT / "samples" / "portrait.jpg"),
        "VOICE_FILE": str(ROOT / "samples" / "voice.wav"),
    }
    output = run("node", str(HERE / "build" / "flow.js"), env=env)
    [line] = [line for line in output.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["ok"] and result["final_event"] == "job.completed"
    assert result["problem"] == "JOB_NOT_FOUND"
    assert result["events"] >= 5 and result["video_bytes"] > 1024


def test_strict_type_check_fails_on_a_field_the_contract_lacks(mesh, tmp_path):
    """The check has teeth: reading a field no schema has does not compile."""
    generated = HERE / "generated"
    generated.mkdir(exist_ok=True)
    run("node", "generate.mjs", f"{mesh.url}/openapi.json", str(generated / "api.d.ts"), "--blob")
    probe = HERE / "probe_wrong_field.ts"
    probe.write_text(
        'import type { components } from "./generated/api.js";\n'
        'export const state = (job: components["schemas"]["Job"]): string => job.status;\n'
    )
    try:
        completed = subprocess.run(
            [str(BIN / "tsc"), "--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", str(probe)],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        probe.unlink()
    assert completed.returncode != 0
    assert "Property 'status' does not exist" in completed.stdout
