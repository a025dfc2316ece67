from sluice.auth.v1 import principal_pb2 as _principal_pb2
from sluice.llm.v1 import wire_pb2 as _wire_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LookupRequest(_message.Message):
    __slots__ = ("principal", "request")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    request: _wire_pb2.WireRequest
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., request: _Optional[_Union[_wire_pb2.WireRequest, _Mapping]] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("hit", "events")
    HIT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    events: _containers.RepeatedCompositeFieldContainer[_wire_pb2.WireEvent]
    def __init__(self, hit: _Optional[bool] = ..., events: _Optional[_Iterable[_Union[_wire_pb2.WireEvent, _Mapping]]] = ...) -> None: ...
