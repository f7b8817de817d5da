"""Per-stage checkpoints in the session's work dir and the atomic hand-over of a
finished job's files to the session's output dir."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from libs.common.outputs import OUTPUT_FILES

MANIFEST_NAME = "manifest.json"


@dataclass
class StageCheckpoint:
    stage: str
    backend: str
    outputs: dict[str, Path]
    facts: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reset_dir(path: Path) -> None:
    """Empties a stage dir so a re-run never sees a killed run's leftovers."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_checkpoint(stage_dir: Path, checkpoint: StageCheckpoint) -> None:
    """Blocking. Written last and renamed into place: a manifest means the stage is done."""
    outputs = {}
    for name, path in checkpoint.outputs.items():
        outputs[name] = {"file": str(path.relative_to(stage_dir)), "size": path.stat().st_size}
    body = {
        "stage": checkpoint.stage,
        "backend": checkpoint.backend,
        "outputs": outputs,
        "facts": checkpoint.facts,
        "seconds": checkpoint.seconds,
    }
    temporary = stage_dir / (MANIFEST_NAME + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(body, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, stage_dir / MANIFEST_NAME)


def read_checkpoint(stage_dir: Path) -> StageCheckpoint | None:
    """Blocking. The stage's checkpoint when its manifest and every output are intact."""
    try:
        body = json.loads((stage_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        outputs = {}
        for name, entry in body["outputs"].items():
            path = (stage_dir / entry["file"]).resolve()
            if stage_dir.resolve() not in path.parents or path.stat().st_size != entry["size"]:
                return None
            outputs[name] = path
        return StageCheckpoint(
            body["stage"],
            body["backend"],
            outputs,
            dict(body.get("facts", {})),
            float(body.get("seconds", 0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class PublishedOutput:
    name: str
    content_type: str
    size_bytes: int
    sha256: str


def publish_outputs(files: dict[str, Path], output_root: Path, job_id: str) -> list[PublishedOutput]:
    """Blocking. Copies `files` into `output/<job_id>/` through a temporary dir renamed
    at the end, so output/ never holds a half-written job."""
    final = output_root / job_id
    if not final.is_dir():
        staging = output_root / f".{job_id}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700, parents=True)
        for name, source in files.items():
            target = staging / OUTPUT_FILES[name][0]
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        with contextlib.suppress(OSError):
            os.replace(staging, final)
        shutil.rmtree(staging, ignore_errors=True)
    published = []
    for name in files:
        file_name, content_type = OUTPUT_FILES[name]
        path = final / file_name
        published.append(PublishedOutput(name, content_type, path.stat().st_size, sha256_of(path)))
    return published


def remove_partial_outputs(output_root: Path, job_id: str) -> None:
    shutil.rmtree(output_root / f".{job_id}.partial", ignore_errors=True)
