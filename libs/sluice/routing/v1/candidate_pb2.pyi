from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Prices(_message.Message):
    __slots__ = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "server_tool_use")
    class ServerToolUseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_5M_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_FIELD_NUMBER: _ClassVar[int]
    SERVER_TOOL_USE_FIELD_NUMBER: _ClassVar[int]
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    server_tool_use: _containers.ScalarMap[str, float]
    def __init__(self, input: _Optional[float] = ..., output: _Optional[float] = ..., cache_write_5m: _Optional[float] = ..., cache_write_1h: _Optional[float] = ..., cache_read: _Optional[float] = ..., server_tool_use: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("model_id", "provider", "upstream_model", "region", "prices", "context_window", "max_output_tokens", "deployment", "geo", "inference_geo", "reason", "accepts_prefill")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_GEO_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_PREFILL_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    provider: str
    upstream_model: str
    region: str
    prices: Prices
    context_window: int
    max_output_tokens: int
    deployment: str
    geo: str
    inference_geo: str
    reason: str
    accepts_prefill: bool
    def __init__(self, model_id: _Optional[str] = ..., provider: _Optional[str] = ..., upstream_model: _Optional[str] = ..., region: _Optional[str] = ..., prices: _Optional[_Union[Prices, _Mapping]] = ..., context_window: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., deployment: _Optional[str] = ..., geo: _Optional[str] = ..., inference_geo: _Optional[str] = ..., reason: _Optional[str] = ..., accepts_prefill: _Optional[bool] = ...) -> None: ...
