from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_ALLOW: _ClassVar[Action]
    ACTION_REDACT: _ClassVar[Action]
    ACTION_BLOCK: _ClassVar[Action]
    ACTION_FLAG: _ClassVar[Action]
ACTION_UNSPECIFIED: Action
ACTION_ALLOW: Action
ACTION_REDACT: Action
ACTION_BLOCK: Action
ACTION_FLAG: Action

class Verdict(_message.Message):
    __slots__ = ("action", "rule_ids", "policy_version")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    action: Action
    rule_ids: _containers.RepeatedScalarFieldContainer[str]
    policy_version: str
    def __init__(self, action: _Optional[_Union[Action, str]] = ..., rule_ids: _Optional[_Iterable[str]] = ..., policy_version: _Optional[str] = ...) -> None: ...
