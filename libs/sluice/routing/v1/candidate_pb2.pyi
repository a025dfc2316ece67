from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Prices(_message.Message):
    __slots__ = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_5M_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_FIELD_NUMBER: _ClassVar[int]
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    def __init__(self, input: _Optional[float] = ..., output: _Optional[float] = ..., cache_write_5m: _Optional[float] = ..., cache_write_1h: _Optional[float] = ..., cache_read: _Optional[float] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("model_id", "provider", "upstream_model", "region", "prices")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    provider: str
    upstream_model: str
    region: str
    prices: Prices
    def __init__(self, model_id: _Optional[str] = ..., provider: _Optional[str] = ..., upstream_model: _Optional[str] = ..., region: _Optional[str] = ..., prices: _Optional[_Union[Prices, _Mapping]] = ...) -> None: ...
