import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sluice.auth.v1 import principal_pb2 as _principal_pb2
from sluice.cache.v1 import prefix_pb2 as _prefix_pb2
from sluice.llm.v1 import messages_pb2 as _messages_pb2
from sluice.llm.v1 import wire_pb2 as _wire_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LookupRequest(_message.Message):
    __slots__ = ("principal", "request", "model", "catalog_version", "mode", "prompt_version", "task")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    request: _wire_pb2.WireRequest
    model: str
    catalog_version: str
    mode: str
    prompt_version: str
    task: str
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., request: _Optional[_Union[_wire_pb2.WireRequest, _Mapping]] = ..., model: _Optional[str] = ..., catalog_version: _Optional[str] = ..., mode: _Optional[str] = ..., prompt_version: _Optional[str] = ..., task: _Optional[str] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("hit", "events", "status", "reason", "mode", "key", "answer", "ttl_seconds")
    HIT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    events: _containers.RepeatedCompositeFieldContainer[_wire_pb2.WireEvent]
    status: str
    reason: str
    mode: str
    key: bytes
    answer: CachedAnswer
    ttl_seconds: int
    def __init__(self, hit: _Optional[bool] = ..., events: _Optional[_Iterable[_Union[_wire_pb2.WireEvent, _Mapping]]] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., mode: _Optional[str] = ..., key: _Optional[bytes] = ..., answer: _Optional[_Union[CachedAnswer, _Mapping]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class CachedAnswer(_message.Message):
    __slots__ = ("events", "origin_request_id", "policy_version", "input_digest", "stored_at", "ttl_seconds", "model", "usage", "cost_usd", "category")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STORED_AT_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_wire_pb2.WireEvent]
    origin_request_id: str
    policy_version: str
    input_digest: bytes
    stored_at: _timestamp_pb2.Timestamp
    ttl_seconds: int
    model: str
    usage: _messages_pb2.Usage
    cost_usd: float
    category: str
    def __init__(self, events: _Optional[_Iterable[_Union[_wire_pb2.WireEvent, _Mapping]]] = ..., origin_request_id: _Optional[str] = ..., policy_version: _Optional[str] = ..., input_digest: _Optional[bytes] = ..., stored_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ttl_seconds: _Optional[int] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_messages_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., category: _Optional[str] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("principal", "key", "answer")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    key: bytes
    answer: CachedAnswer
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., key: _Optional[bytes] = ..., answer: _Optional[_Union[CachedAnswer, _Mapping]] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("stored", "reason", "stored_bytes")
    STORED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    reason: str
    stored_bytes: int
    def __init__(self, stored: _Optional[bool] = ..., reason: _Optional[str] = ..., stored_bytes: _Optional[int] = ...) -> None: ...

class RecordPrefixRequest(_message.Message):
    __slots__ = ("principal", "plan", "deployment", "usage", "model")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    plan: _prefix_pb2.PrefixPlan
    deployment: str
    usage: _messages_pb2.Usage
    model: str
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., plan: _Optional[_Union[_prefix_pb2.PrefixPlan, _Mapping]] = ..., deployment: _Optional[str] = ..., usage: _Optional[_Union[_messages_pb2.Usage, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class RecordPrefixResponse(_message.Message):
    __slots__ = ("written", "refreshed")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    REFRESHED_FIELD_NUMBER: _ClassVar[int]
    written: int
    refreshed: int
    def __init__(self, written: _Optional[int] = ..., refreshed: _Optional[int] = ...) -> None: ...

class StoredEntry(_message.Message):
    __slots__ = ("answer", "generations")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    answer: CachedAnswer
    generations: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, answer: _Optional[_Union[CachedAnswer, _Mapping]] = ..., generations: _Optional[_Iterable[int]] = ...) -> None: ...
