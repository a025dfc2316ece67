from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_ALLOW: _ClassVar[Action]
    ACTION_REDACT: _ClassVar[Action]
    ACTION_BLOCK: _ClassVar[Action]
    ACTION_FLAG: _ClassVar[Action]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_LOW: _ClassVar[Severity]
    SEVERITY_MEDIUM: _ClassVar[Severity]
    SEVERITY_HIGH: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_INPUT: _ClassVar[Stage]
    STAGE_OUTPUT: _ClassVar[Stage]
ACTION_UNSPECIFIED: Action
ACTION_ALLOW: Action
ACTION_REDACT: Action
ACTION_BLOCK: Action
ACTION_FLAG: Action
SEVERITY_UNSPECIFIED: Severity
SEVERITY_LOW: Severity
SEVERITY_MEDIUM: Severity
SEVERITY_HIGH: Severity
SEVERITY_CRITICAL: Severity
STAGE_UNSPECIFIED: Stage
STAGE_INPUT: Stage
STAGE_OUTPUT: Stage

class RuleHit(_message.Message):
    __slots__ = ("rule_id", "action", "severity", "matcher", "count")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MATCHER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    action: Action
    severity: Severity
    matcher: str
    count: int
    def __init__(self, rule_id: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., severity: _Optional[_Union[Severity, str]] = ..., matcher: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("action", "rule_ids", "policy_version", "hits", "profile", "stage")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    action: Action
    rule_ids: _containers.RepeatedScalarFieldContainer[str]
    policy_version: str
    hits: _containers.RepeatedCompositeFieldContainer[RuleHit]
    profile: str
    stage: Stage
    def __init__(self, action: _Optional[_Union[Action, str]] = ..., rule_ids: _Optional[_Iterable[str]] = ..., policy_version: _Optional[str] = ..., hits: _Optional[_Iterable[_Union[RuleHit, _Mapping]]] = ..., profile: _Optional[str] = ..., stage: _Optional[_Union[Stage, str]] = ...) -> None: ...
