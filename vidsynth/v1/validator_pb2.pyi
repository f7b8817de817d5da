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

class ScanPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCAN_POLICY_UNSPECIFIED: _ClassVar[ScanPolicy]
    SCAN_POLICY_REQUIRED: _ClassVar[ScanPolicy]
    SCAN_POLICY_OPTIONAL: _ClassVar[ScanPolicy]
SCAN_POLICY_UNSPECIFIED: ScanPolicy
SCAN_POLICY_REQUIRED: ScanPolicy
SCAN_POLICY_OPTIONAL: ScanPolicy

class UploadHeader(_message.Message):
    __slots__ = ("session_id", "kind", "original_filename", "declared_size", "content_type")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FILENAME_FIELD_NUMBER: _ClassVar[int]
    DECLARED_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    kind: _common_pb2.AssetKind
    original_filename: str
    declared_size: int
    content_type: str
    def __init__(self, session_id: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.AssetKind, str]] = ..., original_filename: _Optional[str] = ..., declared_size: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class ValidateUploadRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ValidateUploadResponse(_message.Message):
    __slots__ = ("asset", "report")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    asset: _common_pb2.Asset
    report: _common_pb2.ValidationReport
    def __init__(self, asset: _Optional[_Union[_common_pb2.Asset, _Mapping]] = ..., report: _Optional[_Union[_common_pb2.ValidationReport, _Mapping]] = ...) -> None: ...

class GetUploadPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KindPolicy(_message.Message):
    __slots__ = ("kind", "max_bytes", "allowed_content_types", "allowed_extensions", "min_width", "min_height", "max_width", "max_height", "max_pixels", "min_duration_seconds", "max_duration_seconds")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_CONTENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MIN_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MIN_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    kind: _common_pb2.AssetKind
    max_bytes: int
    allowed_content_types: _containers.RepeatedScalarFieldContainer[str]
    allowed_extensions: _containers.RepeatedScalarFieldContainer[str]
    min_width: int
    min_height: int
    max_width: int
    max_height: int
    max_pixels: int
    min_duration_seconds: float
    max_duration_seconds: float
    def __init__(self, kind: _Optional[_Union[_common_pb2.AssetKind, str]] = ..., max_bytes: _Optional[int] = ..., allowed_content_types: _Optional[_Iterable[str]] = ..., allowed_extensions: _Optional[_Iterable[str]] = ..., min_width: _Optional[int] = ..., min_height: _Optional[int] = ..., max_width: _Optional[int] = ..., max_height: _Optional[int] = ..., max_pixels: _Optional[int] = ..., min_duration_seconds: _Optional[float] = ..., max_duration_seconds: _Optional[float] = ...) -> None: ...

class UploadPolicy(_message.Message):
    __slots__ = ("kinds", "scan_policy", "scanner_available", "signature_db", "chunk_size_bytes")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    SCAN_POLICY_FIELD_NUMBER: _ClassVar[int]
    SCANNER_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_DB_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedCompositeFieldContainer[KindPolicy]
    scan_policy: ScanPolicy
    scanner_available: bool
    signature_db: str
    chunk_size_bytes: int
    def __init__(self, kinds: _Optional[_Iterable[_Union[KindPolicy, _Mapping]]] = ..., scan_policy: _Optional[_Union[ScanPolicy, str]] = ..., scanner_available: _Optional[bool] = ..., signature_db: _Optional[str] = ..., chunk_size_bytes: _Optional[int] = ...) -> None: ...

class ListQuarantineRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QuarantineEntry(_message.Message):
    __slots__ = ("quarantine_id", "session_id", "user_id", "original_filename", "sha256", "size_bytes", "signature", "reason_code", "create_time")
    QUARANTINE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FILENAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    quarantine_id: str
    session_id: str
    user_id: str
    original_filename: str
    sha256: str
    size_bytes: int
    signature: str
    reason_code: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, quarantine_id: _Optional[str] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., original_filename: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., signature: _Optional[str] = ..., reason_code: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListQuarantineResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[QuarantineEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[QuarantineEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
