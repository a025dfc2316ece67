from sluice.auth.v1 import principal_pb2 as _principal_pb2
from sluice.llm.v1 import messages_pb2 as _messages_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthenticateRequest(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class AuthenticateResponse(_message.Message):
    __slots__ = ("principal",)
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ...) -> None: ...

class AdmitRequest(_message.Message):
    __slots__ = ("principal", "model", "estimated_input_tokens", "max_output_tokens", "requests_only")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    model: str
    estimated_input_tokens: int
    max_output_tokens: int
    requests_only: bool
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., model: _Optional[str] = ..., estimated_input_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., requests_only: _Optional[bool] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("lease_id", "tokens", "spend_micro_usd", "day", "month", "local", "stream_slots")
    class StreamSlotsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SPEND_MICRO_USD_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    STREAM_SLOTS_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    tokens: int
    spend_micro_usd: int
    day: str
    month: str
    local: bool
    stream_slots: _containers.ScalarMap[str, str]
    def __init__(self, lease_id: _Optional[str] = ..., tokens: _Optional[int] = ..., spend_micro_usd: _Optional[int] = ..., day: _Optional[str] = ..., month: _Optional[str] = ..., local: _Optional[bool] = ..., stream_slots: _Optional[_Mapping[str, str]] = ...) -> None: ...

class AdmitResponse(_message.Message):
    __slots__ = ("reservation", "rate_limit_headers")
    class RateLimitHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_HEADERS_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    rate_limit_headers: _containers.ScalarMap[str, str]
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ..., rate_limit_headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("principal", "reservation", "usage", "model")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    reservation: Reservation
    usage: _messages_pb2.Usage
    model: str
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., reservation: _Optional[_Union[Reservation, _Mapping]] = ..., usage: _Optional[_Union[_messages_pb2.Usage, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
