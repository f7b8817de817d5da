"""Starting a real clamd for a data dir: the process supervisor's part (`vidsynth up`, and
the tests and benchmarks that run a clamd of their own).

clamd uses the official signature database when one is installed; without it (no
network for freshclam) it loads the project's own small test database, and reports
which in the validator's policy and health. The address it listens on and what its
answers mean are shared with the validator through libs/common/clamd_link.py.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

from libs.common import clamd_link
from libs.common.clamd_link import DB_OFFICIAL, DB_TEST, clamd_dir

OFFICIAL_DB_DIR = Path("/var/lib/clamav")
TEST_SIGNATURES = Path(__file__).parent / "signatures" / "vidsynth-test.ndb"
LOOPBACK = "127.0.0.1"
# Above the largest upload cap, so a legitimate upload never hits the stream limit.
DEFAULT_STREAM_MAX_BYTES = 64 * 1024 * 1024
# Unix socket paths longer than this do not fit in sockaddr_un.
MAX_UNIX_SOCKET_PATH = 100


def has_official_db(db_dir: Path) -> bool:
    return db_dir.is_dir() and any(p.suffix in (".cvd", ".cld") for p in db_dir.iterdir() if p.is_file())


def installed() -> bool:
    return shutil.which("clamd") is not None


def _conf_lines(address: str, database_dir: Path, work_dir: Path, stream_max_bytes: int) -> list[str]:
    scheme, _, rest = address.partition(":")
    if scheme == "unix":
        listen = [f"LocalSocket {rest}", "LocalSocketMode 600"]
    else:
        host, _, port = rest.rpartition(":")
        listen = [f"TCPSocket {port}", f"TCPAddr {host}"]
    return [
        "Foreground yes",
        *listen,
        f"DatabaseDirectory {database_dir}",
        f"TemporaryDirectory {work_dir}",
        f"StreamMaxLength {stream_max_bytes}",
        f"MaxFileSize {stream_max_bytes}",
        f"MaxScanSize {stream_max_bytes * 4}",
        # A file too big to scan fully must not pass as clean.
        "AlertExceedsMax yes",
        # The image fuzzy hash decodes the whole picture inside clamd, with no CPU or memory
        # cap of ours: a 150 KB PNG of zeros cost it 1.6 s and 160 MB. Photos are decoded
        # once, bounded, in the validator's decode workers instead.
        "ScanImageFuzzyHash no",
        "MaxThreads 4",
        "LogTime yes",
    ]


def clamd_command(
    data_dir: Path,
    *,
    tcp_port: int | None = None,
    official_db_dir: Path = OFFICIAL_DB_DIR,
    test_db: Path = TEST_SIGNATURES,
    stream_max_bytes: int = DEFAULT_STREAM_MAX_BYTES,
) -> tuple[list[str], str, str]:
    """Writes `<data_dir>/clamd/clamd.conf` and returns (argv, address, db_kind).

    Blocking (small file writes). The address is a unix socket in the data dir, or
    loopback TCP when `tcp_port` is given (or the socket path would be too long);
    pass it to the validator as VIDSYNTH_VALIDATOR_CLAMD_ADDRESS.
    """
    base = clamd_dir(data_dir)
    work_dir = base / "tmp"
    work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    base.chmod(0o700)
    if has_official_db(official_db_dir):
        database_dir, db_kind = official_db_dir, DB_OFFICIAL
    else:
        database_dir, db_kind = base / "db", DB_TEST
        database_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(test_db, database_dir / test_db.name)
    socket_path = base / "clamd.sock"
    if tcp_port is None and len(str(socket_path)) <= MAX_UNIX_SOCKET_PATH:
        address = f"unix:{socket_path}"
        socket_path.unlink(missing_ok=True)
    else:
        address = f"tcp:{LOOPBACK}:{tcp_port or _free_loopback_port()}"
    conf = base / "clamd.conf"
    conf.write_text("\n".join(_conf_lines(address, database_dir, work_dir, stream_max_bytes)) + "\n")
    return ["clamd", f"--config-file={conf}"], address, db_kind


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


async def wait_until_ready(address: str, limit_seconds: float = 120.0) -> bool:
    """Polls clamd with PING until it answers (loading the official DB takes a while)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    while loop.time() < deadline:
        if (await clamd_link.status(address, socket_timeout=2.0))[0]:
            return True
        await asyncio.sleep(0.2)
    return False
