"""StageRunnerService settings (`VIDSYNTH_STAGE_RUNNER_*`) and the TOML file of external
model backends (argv templates, never shell strings)."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, SecretStr

from libs.common.settings import VidsynthSettings

DEFAULT_BACKENDS_FILE = Path(__file__).with_name("backends.toml")
STAGE_NAMES = ("script", "voice", "face", "animate", "enhance", "assemble")


class StageRunnerSettings(VidsynthSettings):
    """Settings of the stage runner: queue bounds, timeouts, backends, webhooks."""

    stage_runner_db_file: str = Field(
        "stage_runner.sqlite3", description="SQLite file of jobs and cost rates, inside the data dir."
    )
    stage_runner_max_running_jobs: int = Field(2, ge=1, description="Jobs running at once (global).")
    stage_runner_stage_limits: str = Field(
        "",
        description='Optional per-stage concurrency across jobs, "stage=n,..." (e.g. "animate=1" on a '
        "machine short of memory); empty: stages of different jobs run side by side.",
    )
    stage_runner_gpu_slots: int = Field(
        1,
        ge=1,
        description="Stages whose backend needs the GPU (XTTS, SadTalker, Real-ESRGAN) running at "
        "once across jobs; stages on the CPU are not held back by them.",
    )
    stage_runner_max_queued_jobs: int = Field(
        50, ge=1, description="Jobs waiting in the queue before new ones are refused with QUEUE_FULL."
    )
    stage_runner_max_running_jobs_per_user: int = Field(
        1,
        ge=1,
        description="Jobs of one user running at once (across replicas with Redis); the other run "
        "slots stay free for other users.",
    )
    stage_runner_max_queued_jobs_per_user: int = Field(
        5,
        ge=1,
        description="Jobs of one user waiting in the queue before more are refused with "
        "USER_JOB_LIMIT_REACHED (429, Retry-After). Users take turns for free run slots: fewest "
        "jobs running first, then the user served longest ago, FIFO within a user.",
    )
    stage_runner_stage_timeout_seconds: float = Field(
        3600.0, gt=0, description="Default time limit of one stage (STAGE_TIMEOUT); backends may override."
    )
    stage_runner_backends_file: Path | None = Field(
        None,
        description="TOML file with the external backends' argv templates (default: the shipped "
        "services/stage_runner/backends.toml).",
    )
    stage_runner_simulation_seconds: float = Field(
        0.3, ge=0, description="How long each simulated stage takes (besides writing its media)."
    )
    stage_runner_max_script_chars: int = Field(
        20_000, gt=0, description="Longest script text accepted (SCRIPT_TOO_LONG)."
    )
    stage_runner_webhook_allowed_hosts: str = Field(
        "", description="Comma-separated host[:port] a webhook may target; empty refuses all webhooks."
    )
    stage_runner_webhook_secret: SecretStr = Field(
        SecretStr(""), description="HMAC-SHA256 key of webhook signatures (required to use webhooks)."
    )
    stage_runner_webhook_max_attempts: int = Field(5, ge=1, description="Webhook delivery attempts.")
    stage_runner_webhook_backoff_seconds: float = Field(
        1.0, gt=0, description="First retry delay of a webhook; doubles each attempt."
    )
    stage_runner_webhook_timeout_seconds: float = Field(10.0, gt=0, description="Per-attempt HTTP timeout.")
    stage_runner_progress_buffer_events: int = Field(
        2000, ge=10, description="Progress events kept while ProgressService is unreachable."
    )

    stage_runner_redis_namespace: str = Field(
        "vidsynth:",
        description="Prefix of every stage runner key in Redis (with VIDSYNTH_REDIS_URL), so meshes can share one.",
    )
    stage_runner_reclaim_idle_seconds: float = Field(
        30.0,
        gt=0,
        description="With Redis: a job whose runner sent no heartbeat for this long is taken over "
        "by another replica (XAUTOCLAIM) and resumed from its last checkpoint.",
    )
    stage_runner_heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        description="With Redis: how often a replica heartbeats its running jobs and checks for "
        "cancellations (keep well under the reclaim time).",
    )
    stage_runner_idempotency_ttl_seconds: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="With Redis: how long an Idempotency-Key keeps answering with its job.",
    )

    @property
    def backends_file(self) -> Path:
        return self.stage_runner_backends_file or DEFAULT_BACKENDS_FILE

    @functools.cached_property
    def stage_limits(self) -> dict[str, int]:
        limits: dict[str, int] = {}
        for pair in self.stage_runner_stage_limits.split(","):
            name, sep, value = pair.strip().partition("=")
            if not pair.strip():
                continue
            if not sep or name not in STAGE_NAMES or not value.isdigit() or int(value) < 1:
                raise ValueError(f'stage limits must look like "voice=1,animate=1": bad {pair!r}')
            limits[name] = int(value)
        return limits

    @functools.cached_property
    def webhook_hosts(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower() for h in self.stage_runner_webhook_allowed_hosts.split(",") if h.strip()
        )


@dataclass(frozen=True)
class ExternalBackendConfig:
    """One external model command: where it runs and how its argv is built."""

    name: str
    stage: str
    argv: list[str]
    conda_env: str = ""
    interpreter: str = ""
    cwd: str = ""
    # What the command writes: a templated path, or a glob inside `output_dir`.
    output: str = ""
    output_dir: str = ""
    output_glob: str = ""
    output_format: str = ""
    needs_gpu: bool = False
    timeout_seconds: float = 0.0
    # tqdm bars the command prints one after another; progress spreads over them.
    progress_bars: int = 1
    install_hint: str = ""
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendsFile:
    conda_executable: str
    backends: list[ExternalBackendConfig]


def _backend_from_table(name: str, table: dict) -> ExternalBackendConfig:
    argv = table.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"backend {name}: argv must be a non-empty list of strings")
    stage = table.get("stage", "")
    if stage not in STAGE_NAMES:
        raise ValueError(f"backend {name}: unknown stage {stage!r}")
    if not (table.get("output") or table.get("output_glob")):
        raise ValueError(f"backend {name}: set output or output_glob")
    return ExternalBackendConfig(
        name=name,
        stage=stage,
        argv=list(argv),
        conda_env=str(table.get("conda_env", "")),
        interpreter=str(table.get("interpreter", "")),
        cwd=str(table.get("cwd", "")),
        output=str(table.get("output", "")),
        output_dir=str(table.get("output_dir", "")),
        output_glob=str(table.get("output_glob", "")),
        output_format=str(table.get("output_format", "")),
        needs_gpu=bool(table.get("needs_gpu", False)),
        timeout_seconds=float(table.get("timeout_seconds", 0.0)),
        progress_bars=max(1, int(table.get("progress_bars", 1))),
        install_hint=str(table.get("install_hint", "")),
        variables={str(k): str(v) for k, v in table.get("variables", {}).items()},
    )


def load_backends_file(path: Path) -> BackendsFile:
    """Parses the backends TOML; a malformed file stops the service at start."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    tables = data.get("backends", {})
    return BackendsFile(
        conda_executable=str(data.get("conda", {}).get("executable", "conda")),
        backends=[_backend_from_table(name, table) for name, table in tables.items()],
    )
