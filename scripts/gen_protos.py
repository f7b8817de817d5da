"""Regenerates the Python stubs (`vidsynth/v1/*_pb2*.py`, `vidsynth/internal/v1/*_pb2*.py`
and their `.pyi`) from `protos/`.

Usage: python -m scripts.gen_protos [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
# The public API (what clients in other languages generate from) and the mesh-only one.
PACKAGE_DIRS = (Path("vidsynth") / "v1", Path("vidsynth") / "internal" / "v1")
PACKAGE_DOCS = {
    Path("vidsynth") / "internal": '"""The mesh-only gRPC API (package vidsynth.internal.v1)."""\n',
}


def proto_files(package_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / package_dir).glob("*.proto"))


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(name for package_dir in PACKAGE_DIRS for name in proto_files(package_dir)),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package_dir in PACKAGE_DIRS:
        source = PROTO_ROOT.name / package_dir
        (out_dir / package_dir / "__init__.py").write_text(
            f'"""Generated from {source} by scripts/gen_protos.py."""\n'
        )
    for package_dir, doc in PACKAGE_DOCS.items():
        (out_dir / package_dir / "__init__.py").write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
