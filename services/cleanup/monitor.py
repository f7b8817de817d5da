"""Resource monitor (psutil): memory, the data disk, CPU, open files and the RSS of
every vidsynth process, with ok / warning / critical levels from configured thresholds."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from services.cleanup.config import CleanupSettings


class Level(enum.IntEnum):
    """Same numbers as vidsynth.v1.HealthLevel, so the proto conversion is a cast."""

    OK = 1
    WARNING = 2
    CRITICAL = 3


@dataclass(frozen=True)
class Thresholds:
    warning_percent: float
    critical_percent: float

    def level_for(self, used_percent: float) -> Level:
        if used_percent >= self.critical_percent:
            return Level.CRITICAL
        if used_percent >= self.warning_percent:
            return Level.WARNING
        return Level.OK


@dataclass(frozen=True)
class Usage:
    used_percent: float
    used_bytes: int
    total_bytes: int
    level: Level


@dataclass(frozen=True)
class ProcessFigures:
    name: str
    pid: int
    rss_bytes: int


@dataclass(frozen=True)
class HealthSnapshot:
    memory: Usage
    disk: Usage
    disk_free_bytes: int
    cpu_percent: float
    open_files: int
    processes: list[ProcessFigures]
    observed_at: datetime
    actions: list[str] = field(default_factory=list)

    @property
    def level(self) -> Level:
        return max(self.memory.level, self.disk.level)

    @property
    def immediate_actions_needed(self) -> bool:
        return self.level is Level.CRITICAL


def existing_ancestor(path: Path) -> Path:
    """The path itself or its nearest existing parent (the data dir may not exist yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _service_name(proc: psutil.Process) -> str:
    """`python -m services.session` -> "session"; anything else by its executable name."""
    try:
        argv = proc.cmdline()
    except (psutil.Error, OSError):
        argv = []
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m" and argv[i + 1].startswith("services."):
            return argv[i + 1].split(".")[1]
    try:
        return proc.name()
    except (psutil.Error, OSError):
        return "unknown"


def _suggested_actions(memory: Usage, disk: Usage) -> list[str]:
    actions: list[str] = []
    if disk.level is Level.CRITICAL:
        actions.append("Disk critical: uploads and new jobs are refused; run EmergencyCleanup or add space.")
    elif disk.level is Level.WARNING:
        actions.append("Disk filling up: run RunCleanup or shorten output retention.")
    if memory.level is Level.CRITICAL:
        actions.append("Memory critical: new jobs are refused until running jobs finish.")
    elif memory.level is Level.WARNING:
        actions.append("Memory high: lower stage concurrency or avoid large enhance jobs.")
    return actions


class ResourceMonitor:
    """Samples the machine. `sample()` blocks briefly: call it through asyncio.to_thread."""

    def __init__(self, data_dir: Path, settings: CleanupSettings, root_pid: int = 0) -> None:
        self._data_dir = data_dir
        self._memory = Thresholds(
            settings.cleanup_memory_warning_percent, settings.cleanup_memory_critical_percent
        )
        self._disk = Thresholds(settings.cleanup_disk_warning_percent, settings.cleanup_disk_critical_percent)
        # Under `vidsynth up` the root is the supervisor and every service is its child.
        self._root_pid = root_pid if root_pid and psutil.pid_exists(root_pid) else os.getpid()
        psutil.cpu_percent(interval=None)  # the first reading is meaningless; prime it

    def _processes(self) -> tuple[list[ProcessFigures], int]:
        try:
            root = psutil.Process(self._root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = [psutil.Process()]
        figures: list[ProcessFigures] = []
        open_files = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    figures.append(ProcessFigures(_service_name(proc), proc.pid, proc.memory_info().rss))
                    open_files += proc.num_fds()
            except (psutil.Error, OSError):
                continue  # exited while we looked
        return figures, open_files

    def sample(self) -> HealthSnapshot:
        vm = psutil.virtual_memory()
        memory_used = vm.total - vm.available
        memory = Usage(vm.percent, memory_used, vm.total, self._memory.level_for(vm.percent))
        du = psutil.disk_usage(str(existing_ancestor(self._data_dir)))
        disk = Usage(du.percent, du.used, du.total, self._disk.level_for(du.percent))
        processes, open_files = self._processes()
        return HealthSnapshot(
            memory=memory,
            disk=disk,
            disk_free_bytes=du.free,
            cpu_percent=psutil.cpu_percent(interval=None),
            open_files=open_files,
            processes=processes,
            observed_at=datetime.now(UTC),
            actions=_suggested_actions(memory, disk),
        )
