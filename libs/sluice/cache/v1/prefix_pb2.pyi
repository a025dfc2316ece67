from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrefixPoint(_message.Message):
    __slots__ = ("hash", "block", "estimated_tokens", "ttl_seconds")
    HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    block: int
    estimated_tokens: int
    ttl_seconds: int
    def __init__(self, hash: _Optional[bytes] = ..., block: _Optional[int] = ..., estimated_tokens: _Optional[int] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class PrefixForecast(_message.Message):
    __slots__ = ("deployment", "read_tokens", "write_5m_tokens", "write_1h_tokens", "hit_hash", "hit_ttl_seconds", "hit_block", "model")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WRITE_5M_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HIT_HASH_FIELD_NUMBER: _ClassVar[int]
    HIT_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HIT_BLOCK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    read_tokens: int
    write_5m_tokens: int
    write_1h_tokens: int
    hit_hash: bytes
    hit_ttl_seconds: int
    hit_block: int
    model: str
    def __init__(self, deployment: _Optional[str] = ..., read_tokens: _Optional[int] = ..., write_5m_tokens: _Optional[int] = ..., write_1h_tokens: _Optional[int] = ..., hit_hash: _Optional[bytes] = ..., hit_ttl_seconds: _Optional[int] = ..., hit_block: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class PrefixPlan(_message.Message):
    __slots__ = ("breakpoints", "forecasts", "warnings", "min_cacheable_tokens")
    BREAKPOINTS_FIELD_NUMBER: _ClassVar[int]
    FORECASTS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MIN_CACHEABLE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    breakpoints: _containers.RepeatedCompositeFieldContainer[PrefixPoint]
    forecasts: _containers.RepeatedCompositeFieldContainer[PrefixForecast]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    min_cacheable_tokens: int
    def __init__(self, breakpoints: _Optional[_Iterable[_Union[PrefixPoint, _Mapping]]] = ..., forecasts: _Optional[_Iterable[_Union[PrefixForecast, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., min_cacheable_tokens: _Optional[int] = ...) -> None: ...
