"""Where a session's files live: `<data_dir>/sessions/<session_id>/{assets,work,output}`.

Every service that touches session files goes through here, so a path is only ever
built from a checked, generated session id and generated file names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libs.common import ids

DIR_MODE = 0o700


@dataclass(frozen=True)
class SessionPaths:
    root: Path

    @property
    def assets(self) -> Path:
        return self.root / "assets"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def output(self) -> Path:
        return self.root / "output"

    def create(self) -> None:
        """Blocking: call off the event loop."""
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for sub in (self.assets, self.work, self.output):
            sub.mkdir(mode=DIR_MODE, exist_ok=True)


def session_paths(sessions_dir: Path, session_id: str) -> SessionPaths:
    """Paths of a session; INVALID_ID before anything touches the filesystem."""
    ids.check_id("session", session_id)
    return SessionPaths(sessions_dir / session_id)
