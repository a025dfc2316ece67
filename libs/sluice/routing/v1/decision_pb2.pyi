from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RouteDecision(_message.Message):
    __slots__ = ("requested", "policy", "policy_version", "task", "task_confidence", "complexity", "complexity_confidence", "tier", "floor", "reason", "experiment", "arm", "estimated_cost_usd", "cost_shift", "classifier_version", "prompt_tokens", "tools", "media", "thinking", "turns", "unhealthy", "policies_version", "cache_affinity")
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    COST_SHIFT_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    THINKING_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    UNHEALTHY_FIELD_NUMBER: _ClassVar[int]
    POLICIES_VERSION_FIELD_NUMBER: _ClassVar[int]
    CACHE_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    requested: str
    policy: str
    policy_version: int
    task: str
    task_confidence: float
    complexity: str
    complexity_confidence: float
    tier: str
    floor: str
    reason: str
    experiment: str
    arm: str
    estimated_cost_usd: float
    cost_shift: float
    classifier_version: str
    prompt_tokens: int
    tools: bool
    media: bool
    thinking: bool
    turns: int
    unhealthy: _containers.RepeatedScalarFieldContainer[str]
    policies_version: str
    cache_affinity: str
    def __init__(self, requested: _Optional[str] = ..., policy: _Optional[str] = ..., policy_version: _Optional[int] = ..., task: _Optional[str] = ..., task_confidence: _Optional[float] = ..., complexity: _Optional[str] = ..., complexity_confidence: _Optional[float] = ..., tier: _Optional[str] = ..., floor: _Optional[str] = ..., reason: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ..., estimated_cost_usd: _Optional[float] = ..., cost_shift: _Optional[float] = ..., classifier_version: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., tools: _Optional[bool] = ..., media: _Optional[bool] = ..., thinking: _Optional[bool] = ..., turns: _Optional[int] = ..., unhealthy: _Optional[_Iterable[str]] = ..., policies_version: _Optional[str] = ..., cache_affinity: _Optional[str] = ...) -> None: ...
