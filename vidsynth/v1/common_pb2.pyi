import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AssetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSET_KIND_UNSPECIFIED: _ClassVar[AssetKind]
    ASSET_KIND_FACE_IMAGE: _ClassVar[AssetKind]
    ASSET_KIND_VOICE_AUDIO: _ClassVar[AssetKind]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_SCRIPT: _ClassVar[Stage]
    STAGE_VOICE: _ClassVar[Stage]
    STAGE_FACE: _ClassVar[Stage]
    STAGE_ANIMATE: _ClassVar[Stage]
    STAGE_ENHANCE: _ClassVar[Stage]
    STAGE_ASSEMBLE: _ClassVar[Stage]

class ProcessingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESSING_MODE_UNSPECIFIED: _ClassVar[ProcessingMode]
    PROCESSING_MODE_AUTO: _ClassVar[ProcessingMode]
    PROCESSING_MODE_PRODUCTION: _ClassVar[ProcessingMode]
    PROCESSING_MODE_SIMULATION: _ClassVar[ProcessingMode]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_COMPLETED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class StageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_STATUS_UNSPECIFIED: _ClassVar[StageStatus]
    STAGE_STATUS_PENDING: _ClassVar[StageStatus]
    STAGE_STATUS_RUNNING: _ClassVar[StageStatus]
    STAGE_STATUS_COMPLETED: _ClassVar[StageStatus]
    STAGE_STATUS_FAILED: _ClassVar[StageStatus]
    STAGE_STATUS_SKIPPED: _ClassVar[StageStatus]
    STAGE_STATUS_CANCELLED: _ClassVar[StageStatus]
ASSET_KIND_UNSPECIFIED: AssetKind
ASSET_KIND_FACE_IMAGE: AssetKind
ASSET_KIND_VOICE_AUDIO: AssetKind
STAGE_UNSPECIFIED: Stage
STAGE_SCRIPT: Stage
STAGE_VOICE: Stage
STAGE_FACE: Stage
STAGE_ANIMATE: Stage
STAGE_ENHANCE: Stage
STAGE_ASSEMBLE: Stage
PROCESSING_MODE_UNSPECIFIED: ProcessingMode
PROCESSING_MODE_AUTO: ProcessingMode
PROCESSING_MODE_PRODUCTION: ProcessingMode
PROCESSING_MODE_SIMULATION: ProcessingMode
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_COMPLETED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
STAGE_STATUS_UNSPECIFIED: StageStatus
STAGE_STATUS_PENDING: StageStatus
STAGE_STATUS_RUNNING: StageStatus
STAGE_STATUS_COMPLETED: StageStatus
STAGE_STATUS_FAILED: StageStatus
STAGE_STATUS_SKIPPED: StageStatus
STAGE_STATUS_CANCELLED: StageStatus

class ErrorSummary(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class FaceBox(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class ScanResult(_message.Message):
    __slots__ = ("engine", "signature_db", "scanned", "clean", "signature")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_DB_FIELD_NUMBER: _ClassVar[int]
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    CLEAN_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    engine: str
    signature_db: str
    scanned: bool
    clean: bool
    signature: str
    def __init__(self, engine: _Optional[str] = ..., signature_db: _Optional[str] = ..., scanned: _Optional[bool] = ..., clean: _Optional[bool] = ..., signature: _Optional[str] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("name", "passed", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    passed: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., passed: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class ValidationReport(_message.Message):
    __slots__ = ("accepted", "kind", "detected_type", "sha256", "size_bytes", "width", "height", "duration_seconds", "sample_rate", "channels", "face_box", "scan", "checks", "warnings", "error")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETECTED_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    FACE_BOX_FIELD_NUMBER: _ClassVar[int]
    SCAN_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    kind: AssetKind
    detected_type: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    duration_seconds: float
    sample_rate: int
    channels: int
    face_box: FaceBox
    scan: ScanResult
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    error: ErrorSummary
    def __init__(self, accepted: _Optional[bool] = ..., kind: _Optional[_Union[AssetKind, str]] = ..., detected_type: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., face_box: _Optional[_Union[FaceBox, _Mapping]] = ..., scan: _Optional[_Union[ScanResult, _Mapping]] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[ErrorSummary, _Mapping]] = ...) -> None: ...

class Asset(_message.Message):
    __slots__ = ("asset_id", "kind", "stored_name", "content_type", "sha256", "size_bytes", "report", "create_time")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STORED_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    kind: AssetKind
    stored_name: str
    content_type: str
    sha256: str
    size_bytes: int
    report: ValidationReport
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, asset_id: _Optional[str] = ..., kind: _Optional[_Union[AssetKind, str]] = ..., stored_name: _Optional[str] = ..., content_type: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., report: _Optional[_Union[ValidationReport, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
