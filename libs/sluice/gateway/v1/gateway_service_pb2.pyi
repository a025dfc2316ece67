from sluice.llm.v1 import messages_pb2 as _messages_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateMessageRequest(_message.Message):
    __slots__ = ("params",)
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    params: _messages_pb2.MessageParams
    def __init__(self, params: _Optional[_Union[_messages_pb2.MessageParams, _Mapping]] = ...) -> None: ...

class CreateMessageResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _messages_pb2.AssistantMessage
    def __init__(self, message: _Optional[_Union[_messages_pb2.AssistantMessage, _Mapping]] = ...) -> None: ...

class StreamMessageRequest(_message.Message):
    __slots__ = ("params",)
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    params: _messages_pb2.MessageParams
    def __init__(self, params: _Optional[_Union[_messages_pb2.MessageParams, _Mapping]] = ...) -> None: ...

class StreamMessageResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _messages_pb2.StreamEvent
    def __init__(self, event: _Optional[_Union[_messages_pb2.StreamEvent, _Mapping]] = ...) -> None: ...
