from sluice.llm.v1 import messages_pb2 as _messages_pb2
from sluice.routing.v1 import candidate_pb2 as _candidate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateRequest(_message.Message):
    __slots__ = ("params", "candidates")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    params: _messages_pb2.MessageParams
    candidates: _containers.RepeatedCompositeFieldContainer[_candidate_pb2.Candidate]
    def __init__(self, params: _Optional[_Union[_messages_pb2.MessageParams, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[_candidate_pb2.Candidate, _Mapping]]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _messages_pb2.StreamEvent
    def __init__(self, event: _Optional[_Union[_messages_pb2.StreamEvent, _Mapping]] = ...) -> None: ...
