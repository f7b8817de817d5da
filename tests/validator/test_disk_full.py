"""Issue 15, item 4 (ENOSPC) at the validator: the sessions directory is a tmpfs the test
mounts, just too small, so the disk really fills up (ENOSPC from the kernel, not an
RLIMIT_FSIZE stand-in) while the spool, a photo's safe copy or a voice's safe copy is
written. Each answers INSUFFICIENT_STORAGE with a retry delay (507 with Retry-After over
HTTP), and no partial file stays behind."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.validator.conftest import Mesh
from tests.validator.corpus import FACE, VOICE_KIND, jpeg, mp3, portrait, wav
from tests.validator.uploading import files_under, grpc_upload, http_upload

PAGE = 4096


def mount_tmpfs(path: Path, size_bytes: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")


def unmount(path: Path) -> None:
    if not path.is_mount():
        return
    for _ in range(50):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture
def tiny_sessions_disk(mesh_settings):
    """`mount(size)` puts the mesh's sessions directory on a tmpfs of `size` bytes."""
    mounted: list[Path] = []

    def mount(size_bytes: int) -> Path:
        path = mesh_settings.sessions_dir
        mount_tmpfs(path, size_bytes)
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        unmount(path)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def noisy_portrait(side: int = 1600) -> bytes:
    """A photo with one face whose JPEG is big (~1.5 MB): its safe copy is ~1.2 MB."""
    face = portrait().resize((side, side), Image.Resampling.LANCZOS)
    noise = Image.effect_noise((side, side), 60).convert("RGB")
    return jpeg(Image.blend(face, noise, 0.25), quality=95)


def reencoded_size(data: bytes) -> int:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, format="JPEG", quality=90)
    return len(out.getvalue())


async def assert_refused_for_storage(
    mesh: Mesh, sessions: Path, kind: int, filename: str, data: bytes
) -> None:
    session_id = await mesh.new_session()
    response, code = await grpc_upload(mesh, session_id, kind, filename, data)
    assert (response, code) == (None, "INSUFFICIENT_STORAGE")
    assert files_under(sessions / session_id) == [], "a partial file stayed behind"
    status, body = await http_upload(mesh, session_id, kind, filename, data)
    assert (status, body["code"]) == (507, "INSUFFICIENT_STORAGE"), body
    assert body["retry_after"] > 0
    assert files_under(sessions / session_id) == []
    assert not (await mesh.get_session(session_id)).assets


async def test_disk_full_while_spooling(in_process_mesh, validator_settings, tiny_sessions_disk):
    sessions = tiny_sessions_disk(2 * 1024 * 1024)
    mesh = await Mesh(in_process_mesh).start(validator_settings)
    try:
        data = wav(110.0)  # 3.5 MB: under the 4 MB cap, over the 2 MB disk
        assert len(data) < validator_settings.validator_voice_max_bytes
        await assert_refused_for_storage(mesh, sessions, VOICE_KIND, "voice.wav", data)
    finally:
        await mesh.close()


async def test_disk_full_while_writing_a_photos_safe_copy(
    in_process_mesh, validator_settings, tiny_sessions_disk
):
    data = noisy_portrait()
    # The spool fits, with room for only half of the safe copy beside it.
    size = (len(data) + reencoded_size(data) // 2) // PAGE * PAGE
    sessions = tiny_sessions_disk(size)
    mesh = await Mesh(in_process_mesh).start(validator_settings)
    try:
        await assert_refused_for_storage(mesh, sessions, FACE, "photo.jpg", data)
        # With the room back, the same photo is accepted.
        unmount(sessions)
        sessions.mkdir(exist_ok=True)
        session_id = await mesh.new_session()
        response, code = await grpc_upload(mesh, session_id, FACE, "photo.jpg", data)
        assert code is None and response.report.accepted, code
    finally:
        await mesh.close()


async def test_disk_full_while_decoding_a_voice_safe_copy(
    in_process_mesh, validator_settings, tiny_sessions_disk
):
    data = mp3(9.0)  # ~70 KB in; its 16-bit PCM safe copy is ~800 KB
    sessions = tiny_sessions_disk(512 * 1024)
    mesh = await Mesh(in_process_mesh).start(validator_settings)
    try:
        await assert_refused_for_storage(mesh, sessions, VOICE_KIND, "voice.mp3", data)
        assert free_bytes(sessions) > 500 * 1024, "the partial safe copy was not removed"
    finally:
        await mesh.close()
