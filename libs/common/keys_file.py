"""The API keys file (VIDSYNTH_API_KEYS_FILE): only each key's SHA-256, never the key.

    # comments and blank lines are ignored
    sha256:<64 hex digits> <user> [admin]

`admin` gives the user the admin role (as VIDSYNTH_ADMIN_USERS does); the role belongs to
the user, so one admin line makes every key of that user an admin's. Keys are looked up on
every request, so a slow password hash (argon2, scrypt) would cost each request tens of
milliseconds for nothing: the keys `vidsynth keys add` makes carry 256 random bits, and
finding a key from its SHA-256 is a preimage search over 2**256, so a plain fast hash is as
safe as a slow one here, and the lookup is one dictionary read. (A slow hash only helps keys
a person chose, which these are not.)

Writers (`vidsynth keys`) hold a lock, write a temporary file with mode 0600 beside the
file, fsync it and rename it over the file, so a reader sees the old file or the new one,
never half of one. A file that others can write is refused like a malformed one: whoever
can write it can make themselves an admin.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DIGEST_PREFIX = "sha256:"
ADMIN_FLAG = "admin"
KEY_PREFIX = "vsk_"
MAX_FILE_BYTES = 8 * 1024 * 1024
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
FILE_HEADER = (
    "# vidsynth API keys: one per line, `sha256:<hex of the key's SHA-256> <user> [admin]`.\n"
    "# Written by `vidsynth keys`; the keys themselves are never stored.\n"
)


class KeysFileError(ValueError):
    """The keys file cannot be used: unreadable, malformed or writable by others."""


@dataclass(frozen=True)
class KeyEntry:
    digest: str  # 64 lower-case hex digits
    user_id: str
    admin: bool = False

    @property
    def key_id(self) -> str:
        """How `vidsynth keys list` names a key: its digest's first 12 hex digits."""
        return f"{DIGEST_PREFIX}{self.digest[:12]}"

    def line(self) -> str:
        return f"{DIGEST_PREFIX}{self.digest} {self.user_id}" + (f" {ADMIN_FLAG}" if self.admin else "")


@dataclass(frozen=True)
class FileKeys:
    """What one read of the file found."""

    entries: tuple[KeyEntry, ...]

    @property
    def users_by_digest(self) -> dict[bytes, str]:
        return {bytes.fromhex(e.digest): e.user_id for e in self.entries}

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(e.user_id for e in self.entries if e.admin)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_api_key() -> str:
    """A fresh key: 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_keys(text: str, source: str = "the keys file") -> FileKeys:
    entries: list[KeyEntry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry = _parse_line(line, f"{source} line {number}")
        if entry.digest in seen:
            raise KeysFileError(f"{source} line {number}: this key's hash is listed twice")
        seen.add(entry.digest)
        entries.append(entry)
    return FileKeys(tuple(entries))


def _parse_line(line: str, where: str) -> KeyEntry:
    fields = line.split()
    expected = f"expected `{DIGEST_PREFIX}<64 hex digits> USER [{ADMIN_FLAG}]`"
    if len(fields) not in (2, 3):
        raise KeysFileError(f"{where}: {expected}, found {len(fields)} fields")
    hashed, user_id = fields[0], fields[1]
    if not hashed.startswith(DIGEST_PREFIX) or not _HEX_DIGEST.fullmatch(hashed[len(DIGEST_PREFIX) :]):
        raise KeysFileError(f"{where}: {expected}; the first field is not a SHA-256 (a raw key?)")
    if not USER_ID.fullmatch(user_id):
        raise KeysFileError(f"{where}: the user id must match {USER_ID.pattern}")
    if len(fields) == 3 and fields[2] != ADMIN_FLAG:
        raise KeysFileError(f"{where}: the third field may only be `{ADMIN_FLAG}`")
    return KeyEntry(hashed[len(DIGEST_PREFIX) :], user_id, admin=len(fields) == 3)


def load_keys_file(path: Path) -> FileKeys:
    """Reads and checks the file (blocking: call it off the event loop)."""
    source = f"API keys file {path}"
    try:
        # Checked before opening too: opening a FIFO would wait for a writer.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise KeysFileError(f"{source} is not a regular file")
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise KeysFileError(f"{source} is not a regular file")
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise KeysFileError(
                    f"{source} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
                    "whoever can write it can add keys: chmod 600 it"
                )
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise KeysFileError(f"{source} cannot be read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise KeysFileError(f"{source} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeysFileError(f"{source} is not UTF-8 text") from None
    return parse_keys(text, source)


# --- writing (vidsynth keys) ------------------------------------------------------------------


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serializes writers of `path` (readers never wait: they read whole renamed files)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_path = path.with_name(f".{path.name}.lock")
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def read_for_update(path: Path) -> FileKeys:
    """The current file for a writer; a missing file is an empty one."""
    if not path.exists():
        return FileKeys(())
    return load_keys_file(path)


def write_keys_file(path: Path, keys: FileKeys) -> None:
    """Atomic replace: a 0600 temporary file beside `path`, fsynced, renamed over it."""
    text = FILE_HEADER + "".join(entry.line() + "\n" for entry in keys.entries)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
