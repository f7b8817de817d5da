"""The API keys file: only hashes stored, strict parsing with the line at fault, atomic 0600
writes, and a keyring that takes a new file at once (or keeps the last good one)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import stat

import pytest
from structlog.testing import capture_logs

from libs.common.errors import VidsynthError
from libs.common.identity import Keyring
from libs.common.keyring_reload import KeysFileWatcher
from libs.common.keys_file import (
    FileKeys,
    KeyEntry,
    KeysFileError,
    load_keys_file,
    new_api_key,
    parse_keys,
    write_keys_file,
)

CAROL_KEY = new_api_key()
DAVE_KEY = new_api_key()


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def write(path, text: str, mode: int = 0o600) -> None:
    """Atomically, as an operator's tool would (a new inode each time)."""
    scratch = path.with_name(path.name + ".new")
    scratch.write_text(text)
    scratch.chmod(mode)
    os.replace(scratch, path)


GOOD = f"# comment\n\nsha256:{sha(CAROL_KEY)} carol\n  sha256:{sha(DAVE_KEY)}   dave  admin \n"


def test_a_good_file_maps_hashes_to_users_and_admins() -> None:
    keys = parse_keys(GOOD)
    assert keys.users_by_digest == {
        hashlib.sha256(CAROL_KEY.encode()).digest(): "carol",
        hashlib.sha256(DAVE_KEY.encode()).digest(): "dave",
    }
    assert keys.admins == frozenset({"dave"})
    assert parse_keys("# nothing but a comment\n").entries == ()


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (
            f"{CAROL_KEY} carol\n",
            "line 1: expected `sha256:<64 hex digits> USER [admin]`; the first field is not a SHA-256",
        ),
        (
            f"sha256:{sha(CAROL_KEY)}\n",
            "line 1: expected `sha256:<64 hex digits> USER [admin]`, found 1 fields",
        ),
        (f"# ok\nsha256:{sha(CAROL_KEY)} carol admin extra\n", "line 2:"),
        (f"sha256:{sha(CAROL_KEY)[:-1]} carol\n", "the first field is not a SHA-256"),
        (f"sha256:{sha(CAROL_KEY).upper()} carol\n", "the first field is not a SHA-256"),
        (f"sha256:{sha(CAROL_KEY)} ../carol\n", "the user id must match"),
        (f"sha256:{sha(CAROL_KEY)} carol root\n", "the third field may only be `admin`"),
        (
            f"sha256:{sha(CAROL_KEY)} carol\nsha256:{sha(CAROL_KEY)} dave\n",
            "line 2: this key's hash is listed twice",
        ),
    ],
    ids=["raw-key", "no-user", "extra-field", "short-hash", "upper-hex", "bad-user", "bad-flag", "duplicate"],
)
def test_a_malformed_line_is_refused_naming_the_file_and_line(tmp_path, text, complaint) -> None:
    path = tmp_path / "keys"
    write(path, text)
    with pytest.raises(KeysFileError) as caught:
        load_keys_file(path)
    assert str(caught.value).startswith(f"API keys file {path}")
    assert complaint in str(caught.value)


def test_unreadable_missing_binary_or_shared_writable_files_are_refused(tmp_path) -> None:
    path = tmp_path / "keys"
    with pytest.raises(KeysFileError, match="cannot be read"):
        load_keys_file(path)
    write(path, GOOD, mode=0o620)
    with pytest.raises(KeysFileError, match="writable by other users"):
        load_keys_file(path)
    path.write_bytes(b"\xff\xfe sha256")
    path.chmod(0o600)
    with pytest.raises(KeysFileError, match="not UTF-8"):
        load_keys_file(path)
    with pytest.raises(KeysFileError, match="not a regular file"):
        load_keys_file(tmp_path)


def test_writes_are_atomic_0600_and_round_trip(tmp_path) -> None:
    path = tmp_path / "keys"
    write(path, GOOD, mode=0o644)
    before = path.stat().st_ino
    keys = FileKeys((KeyEntry(sha(CAROL_KEY), "carol"), KeyEntry(sha(DAVE_KEY), "dave", admin=True)))
    write_keys_file(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != before  # a new file renamed over the old one
    assert load_keys_file(path) == keys
    assert [p.name for p in tmp_path.iterdir()] == ["keys"]  # no temporary left behind
    assert CAROL_KEY not in path.read_text()


def test_new_keys_carry_256_random_bits() -> None:
    made = {new_api_key() for _ in range(100)}
    assert len(made) == 100
    assert all(k.startswith("vsk_") and len(k) == 4 + 43 for k in made)


def test_the_keyring_keeps_environment_keys_and_swaps_file_keys_at_once() -> None:
    ring = Keyring({"env-key-0123": "alice"}, "mesh", frozenset({"root"}), parse_keys(GOOD))
    assert ring.identity_for_key(CAROL_KEY).user_id == "carol"
    assert ring.identity_for_key(DAVE_KEY).is_admin
    assert not ring.identity_for_key(CAROL_KEY).is_admin
    assert ring.identity_from_metadata(
        {"x-vidsynth-mesh-token": "mesh", "x-vidsynth-user-id": "dave"}
    ).is_admin
    ring.install(parse_keys(f"sha256:{sha(DAVE_KEY)} dave\n"))  # carol revoked, dave demoted
    with pytest.raises(VidsynthError) as caught:
        ring.identity_for_key(CAROL_KEY)
    assert caught.value.code == "UNAUTHENTICATED"
    assert not ring.identity_for_key(DAVE_KEY).is_admin
    assert ring.identity_for_key("env-key-0123").user_id == "alice"  # environment keys stay
    assert ring.user_for_key("x" * 10_000) is None


async def eventually(condition, seconds: float = 5.0) -> float:
    started = asyncio.get_running_loop().time()
    while not condition():
        assert asyncio.get_running_loop().time() - started < seconds, "not within the time allowed"
        await asyncio.sleep(0.02)
    return asyncio.get_running_loop().time() - started


def knows(ring: Keyring, key: str) -> bool:
    return ring.user_for_key(key) is not None


async def test_the_watcher_reloads_a_changed_file_and_keeps_the_last_good_one(tmp_path) -> None:
    path = tmp_path / "keys"
    write(path, GOOD)
    ring = Keyring({}, "mesh", frozenset(), load_keys_file(path))
    watcher = KeysFileWatcher(ring, path, interval_seconds=0.1)
    watcher.start()
    try:
        write(path, f"sha256:{sha(DAVE_KEY)} dave admin\n")
        await eventually(lambda: not knows(ring, CAROL_KEY))
        with capture_logs() as logs:
            write(path, "this is not a keys file\n")
            await eventually(lambda: any(e["event"] == "keys_file.reload_failed" for e in logs))
        failure = next(e for e in logs if e["event"] == "keys_file.reload_failed")
        assert failure["log_level"] == "error" and "line 1" in failure["error"]
        assert knows(ring, DAVE_KEY) and not knows(ring, CAROL_KEY)  # the last good keys
        write(path, GOOD)
        await eventually(lambda: knows(ring, CAROL_KEY))
        path.unlink()  # a vanished file is an error too, not "no keys"
        await asyncio.sleep(0.4)
        assert knows(ring, CAROL_KEY)
    finally:
        await watcher.stop()


async def test_sighup_reloads_at_once_whatever_the_poll_interval(tmp_path) -> None:
    path = tmp_path / "keys"
    write(path, GOOD)
    ring = Keyring({}, "mesh", frozenset(), load_keys_file(path))
    watcher = KeysFileWatcher(ring, path, interval_seconds=3600)
    loop = asyncio.get_running_loop()
    watcher.install_sighup()
    try:
        # Without the handler SIGHUP would end the test process: be sure it is there.
        assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN)
        watcher.start()
        write(path, f"sha256:{sha(DAVE_KEY)} dave\n")
        await asyncio.sleep(0.3)
        assert knows(ring, CAROL_KEY)  # no poll for an hour
        os.kill(os.getpid(), signal.SIGHUP)
        assert await eventually(lambda: not knows(ring, CAROL_KEY), 2.0) < 2.0
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await watcher.stop()
