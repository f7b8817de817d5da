import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vidsynth.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_LEVEL_UNSPECIFIED: _ClassVar[HealthLevel]
    HEALTH_LEVEL_OK: _ClassVar[HealthLevel]
    HEALTH_LEVEL_WARNING: _ClassVar[HealthLevel]
    HEALTH_LEVEL_CRITICAL: _ClassVar[HealthLevel]

class CleanupPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLEANUP_PRIORITY_UNSPECIFIED: _ClassVar[CleanupPriority]
    CLEANUP_PRIORITY_LOW: _ClassVar[CleanupPriority]
    CLEANUP_PRIORITY_MEDIUM: _ClassVar[CleanupPriority]
    CLEANUP_PRIORITY_HIGH: _ClassVar[CleanupPriority]
    CLEANUP_PRIORITY_CRITICAL: _ClassVar[CleanupPriority]
HEALTH_LEVEL_UNSPECIFIED: HealthLevel
HEALTH_LEVEL_OK: HealthLevel
HEALTH_LEVEL_WARNING: HealthLevel
HEALTH_LEVEL_CRITICAL: HealthLevel
CLEANUP_PRIORITY_UNSPECIFIED: CleanupPriority
CLEANUP_PRIORITY_LOW: CleanupPriority
CLEANUP_PRIORITY_MEDIUM: CleanupPriority
CLEANUP_PRIORITY_HIGH: CleanupPriority
CLEANUP_PRIORITY_CRITICAL: CleanupPriority

class ResourceUsage(_message.Message):
    __slots__ = ("used_percent", "used_bytes", "total_bytes", "level")
    USED_PERCENT_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    used_percent: float
    used_bytes: int
    total_bytes: int
    level: HealthLevel
    def __init__(self, used_percent: _Optional[float] = ..., used_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., level: _Optional[_Union[HealthLevel, str]] = ...) -> None: ...

class ProcessUsage(_message.Message):
    __slots__ = ("name", "pid", "rss_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    pid: int
    rss_bytes: int
    def __init__(self, name: _Optional[str] = ..., pid: _Optional[int] = ..., rss_bytes: _Optional[int] = ...) -> None: ...

class ResourceHealth(_message.Message):
    __slots__ = ("level", "immediate_actions_needed", "memory", "disk", "cpu_percent", "open_files", "processes", "actions", "observe_time", "retry_after")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATE_ACTIONS_NEEDED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    OPEN_FILES_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_TIME_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    level: HealthLevel
    immediate_actions_needed: bool
    memory: ResourceUsage
    disk: ResourceUsage
    cpu_percent: float
    open_files: int
    processes: _containers.RepeatedCompositeFieldContainer[ProcessUsage]
    actions: _containers.RepeatedScalarFieldContainer[str]
    observe_time: _timestamp_pb2.Timestamp
    retry_after: _duration_pb2.Duration
    def __init__(self, level: _Optional[_Union[HealthLevel, str]] = ..., immediate_actions_needed: _Optional[bool] = ..., memory: _Optional[_Union[ResourceUsage, _Mapping]] = ..., disk: _Optional[_Union[ResourceUsage, _Mapping]] = ..., cpu_percent: _Optional[float] = ..., open_files: _Optional[int] = ..., processes: _Optional[_Iterable[_Union[ProcessUsage, _Mapping]]] = ..., actions: _Optional[_Iterable[str]] = ..., observe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetResourceHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CleanupResult(_message.Message):
    __slots__ = ("task_name", "items_removed", "bytes_freed", "removed", "error_code", "start_time", "end_time")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    items_removed: int
    bytes_freed: int
    removed: _containers.RepeatedScalarFieldContainer[str]
    error_code: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, task_name: _Optional[str] = ..., items_removed: _Optional[int] = ..., bytes_freed: _Optional[int] = ..., removed: _Optional[_Iterable[str]] = ..., error_code: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CleanupTask(_message.Message):
    __slots__ = ("name", "priority", "interval", "last_run_time", "next_run_time", "last_result")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_RESULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    priority: CleanupPriority
    interval: _duration_pb2.Duration
    last_run_time: _timestamp_pb2.Timestamp
    next_run_time: _timestamp_pb2.Timestamp
    last_result: CleanupResult
    def __init__(self, name: _Optional[str] = ..., priority: _Optional[_Union[CleanupPriority, str]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., last_run_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_run_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_result: _Optional[_Union[CleanupResult, _Mapping]] = ...) -> None: ...

class RunCleanupRequest(_message.Message):
    __slots__ = ("task_name",)
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    def __init__(self, task_name: _Optional[str] = ...) -> None: ...

class RunCleanupResponse(_message.Message):
    __slots__ = ("results", "bytes_freed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CleanupResult]
    bytes_freed: int
    def __init__(self, results: _Optional[_Iterable[_Union[CleanupResult, _Mapping]]] = ..., bytes_freed: _Optional[int] = ...) -> None: ...

class EmergencyCleanupRequest(_message.Message):
    __slots__ = ("target_free_bytes",)
    TARGET_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    target_free_bytes: int
    def __init__(self, target_free_bytes: _Optional[int] = ...) -> None: ...

class EmergencyCleanupResponse(_message.Message):
    __slots__ = ("results", "bytes_freed", "level_before", "level_after")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    LEVEL_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_AFTER_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CleanupResult]
    bytes_freed: int
    level_before: HealthLevel
    level_after: HealthLevel
    def __init__(self, results: _Optional[_Iterable[_Union[CleanupResult, _Mapping]]] = ..., bytes_freed: _Optional[int] = ..., level_before: _Optional[_Union[HealthLevel, str]] = ..., level_after: _Optional[_Union[HealthLevel, str]] = ...) -> None: ...

class ListCleanupTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCleanupTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[CleanupTask]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[CleanupTask, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
