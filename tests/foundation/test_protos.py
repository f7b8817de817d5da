"""The protos are the public contract: committed stubs match them, they compile
standalone (the public ones without the internal ones), and they follow buf's naming rules."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from scripts.gen_protos import PACKAGE_DIRS, ROOT, generate
from vidsynth.internal.v1 import progress_internal_pb2, session_internal_pb2
from vidsynth.v1 import (
    access_pb2,
    cleanup_pb2,
    common_pb2,
    error_reason_pb2,
    progress_pb2,
    session_pb2,
    stage_runner_pb2,
    validator_pb2,
)

PROTO_MODULES = [
    access_pb2,
    common_pb2,
    error_reason_pb2,
    session_pb2,
    validator_pb2,
    stage_runner_pb2,
    progress_pb2,
    cleanup_pb2,
    session_internal_pb2,
    progress_internal_pb2,
]
SERVICE_MODULES = [m for m in PROTO_MODULES if m.DESCRIPTOR.services_by_name]


@pytest.mark.parametrize("package_dir", PACKAGE_DIRS, ids=str)
def test_committed_stubs_are_not_stale(tmp_path: Path, package_dir: Path) -> None:
    generate(tmp_path)
    fresh = tmp_path / package_dir
    committed = ROOT / package_dir
    names = sorted(p.name for p in fresh.iterdir() if p.suffix in (".py", ".pyi"))
    assert names == sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi"))
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"regenerate with `python -m scripts.gen_protos`: {mismatch + errors}"


def _compile(proto_root: Path, out: Path) -> descriptor_pb2.FileDescriptorSet:
    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    result = subprocess.run(
        ["protoc", "-I", str(proto_root), "-I", "/usr/include", f"--descriptor_set_out={out}", *protos],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_protos_compile_standalone_with_protoc(tmp_path: Path) -> None:
    descriptor_set = _compile(ROOT / "protos", tmp_path / "set.pb")
    assert {f.package for f in descriptor_set.file} == {"vidsynth.v1", "vidsynth.internal.v1", "google.rpc"}


def test_public_protos_compile_without_the_internal_ones(tmp_path: Path) -> None:
    """What a client in another language gets: protos/ less protos/vidsynth/internal."""
    public = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", public, ignore=shutil.ignore_patterns("internal"))
    assert not (public / "vidsynth" / "internal").exists()
    descriptor_set = _compile(public, tmp_path / "public.pb")
    assert {f.package for f in descriptor_set.file} == {"vidsynth.v1", "google.rpc"}
    services = {s.name for f in descriptor_set.file for s in f.service}
    assert services == {
        "SessionService",
        "ValidatorService",
        "StageRunnerService",
        "ProgressService",
        "CleanupService",
    }


def _upper_snake(name: str) -> str:
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()


@pytest.mark.parametrize("module", PROTO_MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_enums_have_prefixed_unspecified_zero(module) -> None:
    enums = list(module.DESCRIPTOR.enum_types_by_name.values())
    for message in module.DESCRIPTOR.message_types_by_name.values():
        enums.extend(message.enum_types)
    for enum in enums:
        prefix = _upper_snake(enum.name) + "_"
        assert enum.values[0].number == 0
        assert enum.values[0].name == prefix + "UNSPECIFIED"
        assert all(v.name.startswith(prefix) for v in enum.values), enum.name


@pytest.mark.parametrize("module", SERVICE_MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_rpcs_take_their_own_request_message(module) -> None:
    for service in module.DESCRIPTOR.services_by_name.values():
        assert service.name.endswith("Service")
        for method in service.methods:
            assert method.input_type.name == f"{method.name}Request", method.full_name
            if method.name.startswith("List"):
                fields = method.input_type.fields_by_name
                assert "page_size" in fields and "page_token" in fields, method.full_name
                assert "next_page_token" in method.output_type.fields_by_name


def test_subscribe_request_has_session_and_after_seq() -> None:
    fields = progress_pb2.SubscribeRequest.DESCRIPTOR.fields_by_name
    assert {"session_id", "after_seq"} <= set(fields)
