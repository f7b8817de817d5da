"""How the validator and `vidsynth up` reach clamd: the address syntax (`unix:/path` or
`tcp:host:port`), the socket `up` starts under a data dir, and what clamd's VERSION answer
says about its signatures. The validator scans with it; the process supervisor (vidsynth/cli)
starts clamd and waits for it. Neither imports the other.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import clamd

DB_OFFICIAL = "official"
DB_TEST = "test-signatures"


def clamd_dir(data_dir: Path) -> Path:
    return data_dir.resolve() / "clamd"


def default_clamd_address(data_dir: Path) -> str:
    """The unix socket `vidsynth up` gives the clamd it starts for `data_dir`."""
    return f"unix:{clamd_dir(data_dir) / 'clamd.sock'}"


def parse_address(address: str) -> tuple[str, str, int]:
    """("unix", path, 0) or ("tcp", host, port); ValueError for anything else."""
    scheme, _, rest = address.partition(":")
    if scheme == "unix":
        return scheme, rest, 0
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        return scheme, host, int(port)
    raise ValueError(f"clamd address must be unix:/path or tcp:host:port, not {address!r}")


def signature_db_from_version(version: str) -> str:
    """clamd's VERSION names the official daily database ("ClamAV 1.4.6/27500/...");
    with only the project's test signatures it is the bare engine version."""
    return DB_OFFICIAL if "/" in version else DB_TEST


def client(address: str, timeout: float) -> clamd.ClamdUnixSocket | clamd.ClamdNetworkSocket:
    scheme, where, port = parse_address(address)
    if scheme == "unix":
        return clamd.ClamdUnixSocket(where, timeout=timeout)
    return clamd.ClamdNetworkSocket(where, port, timeout=timeout)


def version(address: str, timeout: float) -> str:
    """Blocking: clamd's VERSION answer, or "" when it does not answer."""
    try:
        return client(address, timeout).version()
    except (clamd.ClamdError, OSError):
        return ""


async def status(address: str, socket_timeout: float) -> tuple[bool, str]:
    """(answers right now, "official" or "test-signatures")."""
    answer = await asyncio.to_thread(version, address, socket_timeout)
    return bool(answer), signature_db_from_version(answer) if answer else ""
