"""The scheduler's memory across restarts: each task's last run and result, in one
small JSON file under the data dir, replaced atomically after every run."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import structlog

from services.cleanup.tasks import Outcome

log = structlog.get_logger("vidsynth.cleanup.state")

STATE_FILE_NAME = "cleanup-state.json"


def _outcome_from(data: dict) -> Outcome:
    return Outcome(
        task_name=str(data["task_name"]),
        items_removed=int(data["items_removed"]),
        bytes_freed=int(data["bytes_freed"]),
        removed=[str(p) for p in data["removed"]],
        error_code=str(data["error_code"]),
        started_at=datetime.fromisoformat(data["started_at"]),
        ended_at=datetime.fromisoformat(data["ended_at"]) if data.get("ended_at") else None,
    )


def _outcome_to(outcome: Outcome) -> dict:
    data = asdict(outcome)
    data["started_at"] = outcome.started_at.isoformat()
    data["ended_at"] = outcome.ended_at.isoformat() if outcome.ended_at else None
    return data


class StateFile:
    """Blocking reads and writes: call through asyncio.to_thread."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / STATE_FILE_NAME

    def load(self) -> dict[str, Outcome]:
        """Last outcome by task name; empty when there is none or it cannot be read."""
        try:
            raw = json.loads(self.path.read_text())
            return {name: _outcome_from(data) for name, data in raw["last_results"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as error:
            log.warning("cleanup.state_unreadable", path=str(self.path), error=str(error))
            return {}

    def save(self, last_results: dict[str, Outcome]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"last_results": {n: _outcome_to(o) for n, o in last_results.items()}})
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(body)
        os.replace(temporary, self.path)
