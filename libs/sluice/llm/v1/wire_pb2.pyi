from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WireRequest(_message.Message):
    __slots__ = ("body", "anthropic_version", "anthropic_beta")
    BODY_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_BETA_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    anthropic_version: str
    anthropic_beta: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, body: _Optional[bytes] = ..., anthropic_version: _Optional[str] = ..., anthropic_beta: _Optional[_Iterable[str]] = ...) -> None: ...

class WireEvent(_message.Message):
    __slots__ = ("type", "data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: str
    data: bytes
    def __init__(self, type: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class WireEvents(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WireEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WireEvent, _Mapping]]] = ...) -> None: ...

class TextEdit(_message.Message):
    __slots__ = ("pointer", "text")
    POINTER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    pointer: str
    text: str
    def __init__(self, pointer: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
