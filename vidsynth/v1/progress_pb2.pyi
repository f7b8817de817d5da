import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vidsynth.v1 import access_pb2 as _access_pb2
from vidsynth.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_JOB_QUEUED: _ClassVar[EventType]
    EVENT_TYPE_JOB_STARTED: _ClassVar[EventType]
    EVENT_TYPE_STAGE_STARTED: _ClassVar[EventType]
    EVENT_TYPE_STAGE_PROGRESS: _ClassVar[EventType]
    EVENT_TYPE_STAGE_COMPLETED: _ClassVar[EventType]
    EVENT_TYPE_STAGE_FAILED: _ClassVar[EventType]
    EVENT_TYPE_JOB_COMPLETED: _ClassVar[EventType]
    EVENT_TYPE_JOB_FAILED: _ClassVar[EventType]
    EVENT_TYPE_JOB_CANCELLED: _ClassVar[EventType]
    EVENT_TYPE_WARNING: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_JOB_QUEUED: EventType
EVENT_TYPE_JOB_STARTED: EventType
EVENT_TYPE_STAGE_STARTED: EventType
EVENT_TYPE_STAGE_PROGRESS: EventType
EVENT_TYPE_STAGE_COMPLETED: EventType
EVENT_TYPE_STAGE_FAILED: EventType
EVENT_TYPE_JOB_COMPLETED: EventType
EVENT_TYPE_JOB_FAILED: EventType
EVENT_TYPE_JOB_CANCELLED: EventType
EVENT_TYPE_WARNING: EventType

class ProgressEvent(_message.Message):
    __slots__ = ("seq", "type", "session_id", "job_id", "stage", "stage_percent", "overall_percent", "message", "eta_seconds", "queue_position", "timestamp", "error", "backend")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    OVERALL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    seq: int
    type: EventType
    session_id: str
    job_id: str
    stage: _common_pb2.Stage
    stage_percent: float
    overall_percent: float
    message: str
    eta_seconds: float
    queue_position: int
    timestamp: _timestamp_pb2.Timestamp
    error: _common_pb2.ErrorSummary
    backend: str
    def __init__(self, seq: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., session_id: _Optional[str] = ..., job_id: _Optional[str] = ..., stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., stage_percent: _Optional[float] = ..., overall_percent: _Optional[float] = ..., message: _Optional[str] = ..., eta_seconds: _Optional[float] = ..., queue_position: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ErrorSummary, _Mapping]] = ..., backend: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("session_id", "after_seq", "until_terminal", "job_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    UNTIL_TERMINAL_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    after_seq: int
    until_terminal: bool
    job_id: str
    def __init__(self, session_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., until_terminal: _Optional[bool] = ..., job_id: _Optional[str] = ...) -> None: ...

class GetProgressRequest(_message.Message):
    __slots__ = ("session_id", "job_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    job_id: str
    def __init__(self, session_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class StageProgress(_message.Message):
    __slots__ = ("stage", "status", "percent", "backend")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    status: _common_pb2.StageStatus
    percent: float
    backend: str
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., status: _Optional[_Union[_common_pb2.StageStatus, str]] = ..., percent: _Optional[float] = ..., backend: _Optional[str] = ...) -> None: ...

class ProgressSnapshot(_message.Message):
    __slots__ = ("session_id", "job_id", "job_state", "overall_percent", "stages", "eta_seconds", "queue_position", "last_seq", "message")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    OVERALL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    job_id: str
    job_state: _common_pb2.JobState
    overall_percent: float
    stages: _containers.RepeatedCompositeFieldContainer[StageProgress]
    eta_seconds: float
    queue_position: int
    last_seq: int
    message: str
    def __init__(self, session_id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_state: _Optional[_Union[_common_pb2.JobState, str]] = ..., overall_percent: _Optional[float] = ..., stages: _Optional[_Iterable[_Union[StageProgress, _Mapping]]] = ..., eta_seconds: _Optional[float] = ..., queue_position: _Optional[int] = ..., last_seq: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
