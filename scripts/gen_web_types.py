"""Writes the web page's API types (services/gateway/static/api-types.d.ts) from the gateway's
OpenAPI document with openapi-typescript (installed in tests/ts_client by scripts/setup.sh).

Usage: python -m scripts.gen_web_types [--check]
The page's modules import these types in JSDoc and are type-checked against them
(tests/web/test_page_types.py), so the page reads the fields the API really has.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from libs.common.settings import MeshSettings
from services.gateway.app import create_app

ROOT = Path(__file__).resolve().parent.parent
TYPES = ROOT / "services" / "gateway" / "static" / "api-types.d.ts"
GENERATOR = ROOT / "tests" / "ts_client" / "node_modules" / ".bin" / "openapi-typescript"


def render_types() -> str:
    spec = create_app(MeshSettings()).openapi()
    with tempfile.TemporaryDirectory() as scratch:
        source, out = Path(scratch) / "openapi.json", Path(scratch) / "api-types.d.ts"
        source.write_text(json.dumps(spec), encoding="utf-8")
        subprocess.run(
            [str(GENERATOR), str(source), "--output", str(out)], check=True, capture_output=True, timeout=120
        )
        return out.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed types are stale")
    args = parser.parse_args(argv)
    rendered = render_types()
    if args.check:
        if TYPES.read_text(encoding="utf-8") != rendered:
            print("api-types.d.ts is stale: run python -m scripts.gen_web_types", file=sys.stderr)
            return 1
        return 0
    TYPES.write_text(rendered, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
