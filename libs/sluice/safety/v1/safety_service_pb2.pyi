from sluice.auth.v1 import principal_pb2 as _principal_pb2
from sluice.llm.v1 import messages_pb2 as _messages_pb2
from sluice.safety.v1 import verdict_pb2 as _verdict_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckInputRequest(_message.Message):
    __slots__ = ("principal", "params")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    params: _messages_pb2.MessageParams
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., params: _Optional[_Union[_messages_pb2.MessageParams, _Mapping]] = ...) -> None: ...

class CheckInputResponse(_message.Message):
    __slots__ = ("verdict", "redacted_params", "filter_output", "output_batch_chars")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REDACTED_PARAMS_FIELD_NUMBER: _ClassVar[int]
    FILTER_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BATCH_CHARS_FIELD_NUMBER: _ClassVar[int]
    verdict: _verdict_pb2.Verdict
    redacted_params: _messages_pb2.MessageParams
    filter_output: bool
    output_batch_chars: int
    def __init__(self, verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ..., redacted_params: _Optional[_Union[_messages_pb2.MessageParams, _Mapping]] = ..., filter_output: _Optional[bool] = ..., output_batch_chars: _Optional[int] = ...) -> None: ...

class FilterOutputRequest(_message.Message):
    __slots__ = ("principal", "event")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    event: _messages_pb2.StreamEvent
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., event: _Optional[_Union[_messages_pb2.StreamEvent, _Mapping]] = ...) -> None: ...

class FilterOutputResponse(_message.Message):
    __slots__ = ("event", "verdict")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    event: _messages_pb2.StreamEvent
    verdict: _verdict_pb2.Verdict
    def __init__(self, event: _Optional[_Union[_messages_pb2.StreamEvent, _Mapping]] = ..., verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ...) -> None: ...
