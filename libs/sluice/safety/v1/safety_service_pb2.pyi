from sluice.auth.v1 import principal_pb2 as _principal_pb2
from sluice.llm.v1 import wire_pb2 as _wire_pb2
from sluice.safety.v1 import verdict_pb2 as _verdict_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckInputRequest(_message.Message):
    __slots__ = ("principal", "request")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    request: _wire_pb2.WireRequest
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., request: _Optional[_Union[_wire_pb2.WireRequest, _Mapping]] = ...) -> None: ...

class CheckInputResponse(_message.Message):
    __slots__ = ("verdict", "edits", "filter_output", "output_batch_chars")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    FILTER_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BATCH_CHARS_FIELD_NUMBER: _ClassVar[int]
    verdict: _verdict_pb2.Verdict
    edits: _containers.RepeatedCompositeFieldContainer[_wire_pb2.TextEdit]
    filter_output: bool
    output_batch_chars: int
    def __init__(self, verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ..., edits: _Optional[_Iterable[_Union[_wire_pb2.TextEdit, _Mapping]]] = ..., filter_output: _Optional[bool] = ..., output_batch_chars: _Optional[int] = ...) -> None: ...

class FilterOutputRequest(_message.Message):
    __slots__ = ("principal", "event", "events")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    event: _wire_pb2.WireEvent
    events: _wire_pb2.WireEvents
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., event: _Optional[_Union[_wire_pb2.WireEvent, _Mapping]] = ..., events: _Optional[_Union[_wire_pb2.WireEvents, _Mapping]] = ...) -> None: ...

class FilterOutputResponse(_message.Message):
    __slots__ = ("event", "verdict", "events")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    event: _wire_pb2.WireEvent
    verdict: _verdict_pb2.Verdict
    events: _wire_pb2.WireEvents
    def __init__(self, event: _Optional[_Union[_wire_pb2.WireEvent, _Mapping]] = ..., verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ..., events: _Optional[_Union[_wire_pb2.WireEvents, _Mapping]] = ...) -> None: ...
