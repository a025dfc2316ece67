from sluice.llm.v1 import messages_pb2 as _messages_pb2
from sluice.llm.v1 import wire_pb2 as _wire_pb2
from sluice.routing.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateMessageRequest(_message.Message):
    __slots__ = ("params", "body", "anthropic_version", "anthropic_beta")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_BETA_FIELD_NUMBER: _ClassVar[int]
    params: _messages_pb2.MessageParams
    body: bytes
    anthropic_version: str
    anthropic_beta: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, params: _Optional[_Union[_messages_pb2.MessageParams, _Mapping]] = ..., body: _Optional[bytes] = ..., anthropic_version: _Optional[str] = ..., anthropic_beta: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateMessageResponse(_message.Message):
    __slots__ = ("message", "body")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    message: _messages_pb2.AssistantMessage
    body: bytes
    def __init__(self, message: _Optional[_Union[_messages_pb2.AssistantMessage, _Mapping]] = ..., body: _Optional[bytes] = ...) -> None: ...

class StreamMessageRequest(_message.Message):
    __slots__ = ("params", "body", "anthropic_version", "anthropic_beta")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_BETA_FIELD_NUMBER: _ClassVar[int]
    params: _messages_pb2.MessageParams
    body: bytes
    anthropic_version: str
    anthropic_beta: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, params: _Optional[_Union[_messages_pb2.MessageParams, _Mapping]] = ..., body: _Optional[bytes] = ..., anthropic_version: _Optional[str] = ..., anthropic_beta: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamMessageResponse(_message.Message):
    __slots__ = ("event", "wire")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    WIRE_FIELD_NUMBER: _ClassVar[int]
    event: _messages_pb2.StreamEvent
    wire: _wire_pb2.WireEvent
    def __init__(self, event: _Optional[_Union[_messages_pb2.StreamEvent, _Mapping]] = ..., wire: _Optional[_Union[_wire_pb2.WireEvent, _Mapping]] = ...) -> None: ...

class CountTokensRequest(_message.Message):
    __slots__ = ("params", "body", "anthropic_version", "anthropic_beta")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_BETA_FIELD_NUMBER: _ClassVar[int]
    params: _messages_pb2.MessageParams
    body: bytes
    anthropic_version: str
    anthropic_beta: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, params: _Optional[_Union[_messages_pb2.MessageParams, _Mapping]] = ..., body: _Optional[bytes] = ..., anthropic_version: _Optional[str] = ..., anthropic_beta: _Optional[_Iterable[str]] = ...) -> None: ...

class CountTokensResponse(_message.Message):
    __slots__ = ("input_tokens", "body")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    body: bytes
    def __init__(self, input_tokens: _Optional[int] = ..., body: _Optional[bytes] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("limit", "before_id", "after_id", "lifecycle")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    before_id: str
    after_id: str
    lifecycle: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, limit: _Optional[int] = ..., before_id: _Optional[str] = ..., after_id: _Optional[str] = ..., lifecycle: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("data", "has_more", "first_id", "last_id", "body")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    FIRST_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[_model_pb2.ModelInfo]
    has_more: bool
    first_id: str
    last_id: str
    body: bytes
    def __init__(self, data: _Optional[_Iterable[_Union[_model_pb2.ModelInfo, _Mapping]]] = ..., has_more: _Optional[bool] = ..., first_id: _Optional[str] = ..., last_id: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.ModelInfo
    def __init__(self, model: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ...) -> None: ...
