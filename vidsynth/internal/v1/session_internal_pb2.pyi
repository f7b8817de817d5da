from vidsynth.v1 import access_pb2 as _access_pb2
from vidsynth.v1 import common_pb2 as _common_pb2
from vidsynth.v1 import session_pb2 as _session_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterAssetRequest(_message.Message):
    __slots__ = ("session_id", "asset")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    asset: _common_pb2.Asset
    def __init__(self, session_id: _Optional[str] = ..., asset: _Optional[_Union[_common_pb2.Asset, _Mapping]] = ...) -> None: ...

class UpdateSessionStateRequest(_message.Message):
    __slots__ = ("session_id", "state", "job_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    state: _session_pb2.SessionState
    job_id: str
    def __init__(self, session_id: _Optional[str] = ..., state: _Optional[_Union[_session_pb2.SessionState, str]] = ..., job_id: _Optional[str] = ...) -> None: ...

class SweepExpiredSessionsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class SweepExpiredSessionsResponse(_message.Message):
    __slots__ = ("session_ids", "bytes_freed")
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    bytes_freed: int
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ..., bytes_freed: _Optional[int] = ...) -> None: ...

class BatchGetSessionsRequest(_message.Message):
    __slots__ = ("session_ids",)
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_session_pb2.Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[_session_pb2.Session, _Mapping]]] = ...) -> None: ...
