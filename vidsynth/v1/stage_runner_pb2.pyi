import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from vidsynth.v1 import access_pb2 as _access_pb2
from vidsynth.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BackendKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_KIND_UNSPECIFIED: _ClassVar[BackendKind]
    BACKEND_KIND_BUILTIN: _ClassVar[BackendKind]
    BACKEND_KIND_EXTERNAL: _ClassVar[BackendKind]
    BACKEND_KIND_API: _ClassVar[BackendKind]
    BACKEND_KIND_SIMULATION: _ClassVar[BackendKind]
BACKEND_KIND_UNSPECIFIED: BackendKind
BACKEND_KIND_BUILTIN: BackendKind
BACKEND_KIND_EXTERNAL: BackendKind
BACKEND_KIND_API: BackendKind
BACKEND_KIND_SIMULATION: BackendKind

class Backend(_message.Message):
    __slots__ = ("name", "stage", "kind", "available", "reason", "needs_gpu")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NEEDS_GPU_FIELD_NUMBER: _ClassVar[int]
    name: str
    stage: _common_pb2.Stage
    kind: BackendKind
    available: bool
    reason: str
    needs_gpu: bool
    def __init__(self, name: _Optional[str] = ..., stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., kind: _Optional[_Union[BackendKind, str]] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ..., needs_gpu: _Optional[bool] = ...) -> None: ...

class StageCapability(_message.Message):
    __slots__ = ("stage", "selected_backend", "production_available")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SELECTED_BACKEND_FIELD_NUMBER: _ClassVar[int]
    PRODUCTION_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    selected_backend: str
    production_available: bool
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., selected_backend: _Optional[str] = ..., production_available: _Optional[bool] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("mode", "production_ready", "backends", "stages", "gpu_available", "gpu_name", "detect_time", "missing")
    MODE_FIELD_NUMBER: _ClassVar[int]
    PRODUCTION_READY_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    GPU_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    GPU_NAME_FIELD_NUMBER: _ClassVar[int]
    DETECT_TIME_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    mode: _common_pb2.ProcessingMode
    production_ready: bool
    backends: _containers.RepeatedCompositeFieldContainer[Backend]
    stages: _containers.RepeatedCompositeFieldContainer[StageCapability]
    gpu_available: bool
    gpu_name: str
    detect_time: _timestamp_pb2.Timestamp
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mode: _Optional[_Union[_common_pb2.ProcessingMode, str]] = ..., production_ready: _Optional[bool] = ..., backends: _Optional[_Iterable[_Union[Backend, _Mapping]]] = ..., stages: _Optional[_Iterable[_Union[StageCapability, _Mapping]]] = ..., gpu_available: _Optional[bool] = ..., gpu_name: _Optional[str] = ..., detect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ("refresh",)
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    refresh: bool
    def __init__(self, refresh: _Optional[bool] = ...) -> None: ...

class SetProcessingModeRequest(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: _common_pb2.ProcessingMode
    def __init__(self, mode: _Optional[_Union[_common_pb2.ProcessingMode, str]] = ...) -> None: ...

class ScriptPrompt(_message.Message):
    __slots__ = ("topic", "duration_minutes", "tone", "emotion", "audience", "content_type")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    DURATION_MINUTES_FIELD_NUMBER: _ClassVar[int]
    TONE_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    duration_minutes: float
    tone: str
    emotion: str
    audience: str
    content_type: str
    def __init__(self, topic: _Optional[str] = ..., duration_minutes: _Optional[float] = ..., tone: _Optional[str] = ..., emotion: _Optional[str] = ..., audience: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class JobOptions(_message.Message):
    __slots__ = ("enhance", "upscale_factor", "size", "fps", "burn_captions")
    ENHANCE_FIELD_NUMBER: _ClassVar[int]
    UPSCALE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    BURN_CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    enhance: bool
    upscale_factor: int
    size: int
    fps: int
    burn_captions: bool
    def __init__(self, enhance: _Optional[bool] = ..., upscale_factor: _Optional[int] = ..., size: _Optional[int] = ..., fps: _Optional[int] = ..., burn_captions: _Optional[bool] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("script_text", "script_prompt", "emotion", "tone", "options", "webhook_url")
    SCRIPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_PROMPT_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    TONE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    script_text: str
    script_prompt: ScriptPrompt
    emotion: str
    tone: str
    options: JobOptions
    webhook_url: str
    def __init__(self, script_text: _Optional[str] = ..., script_prompt: _Optional[_Union[ScriptPrompt, _Mapping]] = ..., emotion: _Optional[str] = ..., tone: _Optional[str] = ..., options: _Optional[_Union[JobOptions, _Mapping]] = ..., webhook_url: _Optional[str] = ...) -> None: ...

class StageState(_message.Message):
    __slots__ = ("stage", "status", "backend", "percent", "estimated_seconds", "start_time", "end_time", "error")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    status: _common_pb2.StageStatus
    backend: str
    percent: float
    estimated_seconds: float
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    error: _common_pb2.ErrorSummary
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., status: _Optional[_Union[_common_pb2.StageStatus, str]] = ..., backend: _Optional[str] = ..., percent: _Optional[float] = ..., estimated_seconds: _Optional[float] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ErrorSummary, _Mapping]] = ...) -> None: ...

class JobOutput(_message.Message):
    __slots__ = ("name", "content_type", "size_bytes", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "session_id", "state", "done", "spec", "stages", "overall_percent", "queue_position", "eta_seconds", "outputs", "error", "mode", "create_time", "start_time", "end_time")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    OVERALL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    session_id: str
    state: _common_pb2.JobState
    done: bool
    spec: JobSpec
    stages: _containers.RepeatedCompositeFieldContainer[StageState]
    overall_percent: float
    queue_position: int
    eta_seconds: float
    outputs: _containers.RepeatedCompositeFieldContainer[JobOutput]
    error: _status_pb2.Status
    mode: _common_pb2.ProcessingMode
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., session_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., done: _Optional[bool] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[StageState, _Mapping]]] = ..., overall_percent: _Optional[float] = ..., queue_position: _Optional[int] = ..., eta_seconds: _Optional[float] = ..., outputs: _Optional[_Iterable[_Union[JobOutput, _Mapping]]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., mode: _Optional[_Union[_common_pb2.ProcessingMode, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EstimateJobRequest(_message.Message):
    __slots__ = ("session_id", "spec")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    spec: JobSpec
    def __init__(self, session_id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ...) -> None: ...

class StageEstimate(_message.Message):
    __slots__ = ("stage", "backend", "seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: _common_pb2.Stage
    backend: str
    seconds: float
    def __init__(self, stage: _Optional[_Union[_common_pb2.Stage, str]] = ..., backend: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class JobEstimate(_message.Message):
    __slots__ = ("stages", "total_seconds", "outputs", "speech_seconds")
    STAGES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    stages: _containers.RepeatedCompositeFieldContainer[StageEstimate]
    total_seconds: float
    outputs: _containers.RepeatedScalarFieldContainer[str]
    speech_seconds: float
    def __init__(self, stages: _Optional[_Iterable[_Union[StageEstimate, _Mapping]]] = ..., total_seconds: _Optional[float] = ..., outputs: _Optional[_Iterable[str]] = ..., speech_seconds: _Optional[float] = ...) -> None: ...

class StartJobRequest(_message.Message):
    __slots__ = ("session_id", "spec", "request_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    spec: JobSpec
    request_id: str
    def __init__(self, session_id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("session_id", "page_size", "page_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    page_size: int
    page_token: str
    def __init__(self, session_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GenerateScriptRequest(_message.Message):
    __slots__ = ("prompt",)
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    prompt: ScriptPrompt
    def __init__(self, prompt: _Optional[_Union[ScriptPrompt, _Mapping]] = ...) -> None: ...

class GenerateScriptResponse(_message.Message):
    __slots__ = ("text", "model", "word_count", "estimated_seconds")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    model: str
    word_count: int
    estimated_seconds: float
    def __init__(self, text: _Optional[str] = ..., model: _Optional[str] = ..., word_count: _Optional[int] = ..., estimated_seconds: _Optional[float] = ...) -> None: ...

class ReadJobOutputRequest(_message.Message):
    __slots__ = ("job_id", "name", "offset", "limit")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    offset: int
    limit: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ReadJobOutputResponse(_message.Message):
    __slots__ = ("data", "offset", "total_size", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_size: int
    content_type: str
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...
