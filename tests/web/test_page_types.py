"""Issue 18: the web page reads the API's own shapes. Its modules import the types that
openapi-typescript generates from /openapi.json (static/api-types.d.ts, which must be
fresh) and `tsc --checkJs` checks every field they read against them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.gen_web_types import TYPES, render_types
from services.gateway.routes_ui import STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]
TS_CLIENT = ROOT / "tests" / "ts_client"
TSC = TS_CLIENT / "node_modules" / ".bin" / "tsc"


@pytest.fixture(autouse=True)
def _needs_node_packages():
    assert TSC.exists(), "run: npm ci --prefix tests/ts_client (scripts/setup.sh does)"


def tsc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TSC), *args], cwd=TS_CLIENT, capture_output=True, text=True, timeout=240, check=False
    )


def test_the_page_types_are_generated_from_the_current_spec():
    assert TYPES.read_text(encoding="utf-8") == render_types(), "run `python -m scripts.gen_web_types`"


def test_the_page_type_checks_against_the_api_types():
    completed = tsc("-p", "tsconfig.page.json")
    assert completed.returncode == 0, completed.stdout[-4000:]


def test_reading_a_field_the_api_lacks_fails_the_check(tmp_path):
    page = tmp_path / "static"
    shutil.copytree(STATIC_DIR, page)
    job = page / "job.js"
    source = job.read_text()
    assert "const outputs = job.outputs;" in source
    job.write_text(source.replace("const outputs = job.outputs;", "const outputs = job.output_files;"))
    config = json.loads((TS_CLIENT / "tsconfig.page.json").read_text())
    config["include"] = [str(page / "*.js"), str(page / "api-types.d.ts")]
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    completed = tsc("-p", str(tmp_path / "tsconfig.json"))
    assert completed.returncode != 0
    assert "output_files" in completed.stdout
