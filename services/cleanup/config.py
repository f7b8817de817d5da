"""CleanupService settings (`VIDSYNTH_CLEANUP_*`), read once at build time."""

from __future__ import annotations

from pydantic import Field, model_validator

from libs.common.settings import VidsynthSettings

HOUR = 3600.0
DAY = 24 * HOUR


class CleanupSettings(VidsynthSettings):
    cleanup_memory_warning_percent: float = Field(
        70.0, ge=0, le=100, description="System memory use (%) at which the level becomes warning."
    )
    cleanup_memory_critical_percent: float = Field(
        90.0,
        ge=0,
        le=100,
        description="System memory use (%) at which new jobs are refused with INSUFFICIENT_MEMORY.",
    )
    cleanup_disk_warning_percent: float = Field(
        80.0, ge=0, le=100, description="Data-disk use (%) at which the level becomes warning."
    )
    cleanup_disk_critical_percent: float = Field(
        95.0,
        ge=0,
        le=100,
        description="Data-disk use (%) at which uploads and new jobs are refused with INSUFFICIENT_STORAGE.",
    )
    cleanup_monitor_interval_seconds: float = Field(
        30.0, gt=0, description="How often the monitor samples resources and checks for critical disk."
    )
    cleanup_auto_emergency: bool = Field(
        True, description="Run the emergency cleanup by itself when the data disk reaches critical."
    )
    cleanup_sweep_interval_seconds: float = Field(
        300.0, gt=0, description="Interval of the expired-sessions sweep."
    )
    cleanup_sweep_batch: int = Field(
        500, ge=0, description="Most expired sessions removed per sweep call (0: no limit)."
    )
    cleanup_work_interval_seconds: float = Field(
        900.0, gt=0, description="Interval of the task removing work files of finished jobs."
    )
    cleanup_work_max_age_seconds: float = Field(
        6 * HOUR, ge=0, description="Work files of sessions not processing are removed past this age."
    )
    cleanup_spool_interval_seconds: float = Field(
        900.0, gt=0, description="Interval of the stale temp-spool task."
    )
    cleanup_spool_max_age_seconds: float = Field(
        HOUR, ge=0, description="Temp spools (upload leftovers, data_dir/tmp) are removed past this age."
    )
    cleanup_quarantine_interval_seconds: float = Field(
        HOUR, gt=0, description="Interval of the quarantine task."
    )
    cleanup_quarantine_max_age_days: float = Field(
        30.0, ge=0, description="Quarantined files are removed past this many days."
    )
    cleanup_output_interval_seconds: float = Field(
        HOUR, gt=0, description="Interval of the output-retention task."
    )
    cleanup_output_retention_days: float = Field(
        7.0, ge=0, description="Outputs of sessions not processing are removed past this many days."
    )
    cleanup_orphan_interval_seconds: float = Field(
        HOUR, gt=0, description="Interval of the orphan-directory task."
    )
    cleanup_orphan_min_age_seconds: float = Field(
        DAY, ge=0, description="A directory with no session is removed only once it is this old."
    )
    cleanup_emergency_min_age_seconds: float = Field(
        600.0,
        ge=0,
        description="Emergency cleanup keeps temp spools and work files younger than this (in-flight work).",
    )
    cleanup_emergency_min_output_retention_seconds: float = Field(
        HOUR,
        ge=0,
        description="Emergency cleanup never removes outputs younger than this (oldest go first).",
    )
    cleanup_retry_after_seconds: float = Field(
        30.0, gt=0, description="RetryInfo delay sent with INSUFFICIENT_STORAGE / INSUFFICIENT_MEMORY."
    )

    @model_validator(mode="after")
    def _warning_below_critical(self) -> CleanupSettings:
        if self.cleanup_memory_warning_percent > self.cleanup_memory_critical_percent:
            raise ValueError("cleanup_memory_warning_percent must not exceed the critical threshold")
        if self.cleanup_disk_warning_percent > self.cleanup_disk_critical_percent:
            raise ValueError("cleanup_disk_warning_percent must not exceed the critical threshold")
        return self
