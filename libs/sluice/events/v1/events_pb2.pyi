import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sluice.routing.v1 import decision_pb2 as _decision_pb2
from sluice.safety.v1 import verdict_pb2 as _verdict_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_OK: _ClassVar[Outcome]
    OUTCOME_ERROR: _ClassVar[Outcome]
    OUTCOME_CANCELLED: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_OK: Outcome
OUTCOME_ERROR: Outcome
OUTCOME_CANCELLED: Outcome

class RequestSummary(_message.Message):
    __slots__ = ("request_id", "tenant_id", "key_id", "region", "model_requested", "model_served", "fallbacks", "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cost_usd", "catalog_version", "time_to_first_token_ms", "total_ms", "outcome", "error_reason", "occurred_at", "cache_creation_5m_input_tokens", "cache_creation_1h_input_tokens", "server_tool_use", "service_tier", "inference_geo", "anthropic_version", "anthropic_beta", "operation", "deployment", "provider", "deployment_region", "residency_violation", "attempts", "overhead_cost_usd", "deployments_version", "route", "cache", "trace_id", "upstream_ms")
    class ServerToolUseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_SERVED_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_CREATION_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    CACHE_CREATION_5M_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_CREATION_1H_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TOOL_USE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_GEO_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_BETA_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_REGION_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_VIOLATION_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OVERHEAD_COST_USD_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tenant_id: str
    key_id: str
    region: str
    model_requested: str
    model_served: str
    fallbacks: _containers.RepeatedScalarFieldContainer[str]
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: float
    catalog_version: str
    time_to_first_token_ms: float
    total_ms: float
    outcome: Outcome
    error_reason: str
    occurred_at: _timestamp_pb2.Timestamp
    cache_creation_5m_input_tokens: int
    cache_creation_1h_input_tokens: int
    server_tool_use: _containers.ScalarMap[str, int]
    service_tier: str
    inference_geo: str
    anthropic_version: str
    anthropic_beta: _containers.RepeatedScalarFieldContainer[str]
    operation: str
    deployment: str
    provider: str
    deployment_region: str
    residency_violation: bool
    attempts: _containers.RepeatedCompositeFieldContainer[AttemptRecord]
    overhead_cost_usd: float
    deployments_version: str
    route: _decision_pb2.RouteDecision
    cache: CacheRecord
    trace_id: str
    upstream_ms: float
    def __init__(self, request_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., key_id: _Optional[str] = ..., region: _Optional[str] = ..., model_requested: _Optional[str] = ..., model_served: _Optional[str] = ..., fallbacks: _Optional[_Iterable[str]] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_creation_input_tokens: _Optional[int] = ..., cache_read_input_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ..., catalog_version: _Optional[str] = ..., time_to_first_token_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., error_reason: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cache_creation_5m_input_tokens: _Optional[int] = ..., cache_creation_1h_input_tokens: _Optional[int] = ..., server_tool_use: _Optional[_Mapping[str, int]] = ..., service_tier: _Optional[str] = ..., inference_geo: _Optional[str] = ..., anthropic_version: _Optional[str] = ..., anthropic_beta: _Optional[_Iterable[str]] = ..., operation: _Optional[str] = ..., deployment: _Optional[str] = ..., provider: _Optional[str] = ..., deployment_region: _Optional[str] = ..., residency_violation: _Optional[bool] = ..., attempts: _Optional[_Iterable[_Union[AttemptRecord, _Mapping]]] = ..., overhead_cost_usd: _Optional[float] = ..., deployments_version: _Optional[str] = ..., route: _Optional[_Union[_decision_pb2.RouteDecision, _Mapping]] = ..., cache: _Optional[_Union[CacheRecord, _Mapping]] = ..., trace_id: _Optional[str] = ..., upstream_ms: _Optional[float] = ...) -> None: ...

class CacheRecord(_message.Message):
    __slots__ = ("status", "reason", "origin_request_id", "saved_usd", "predicted_read_tokens", "predicted_write_tokens", "prefix_saved_usd", "prefix_write_premium_usd", "warnings", "stored")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SAVED_USD_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_SAVED_USD_FIELD_NUMBER: _ClassVar[int]
    PREFIX_WRITE_PREMIUM_USD_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    status: str
    reason: str
    origin_request_id: str
    saved_usd: float
    predicted_read_tokens: int
    predicted_write_tokens: int
    prefix_saved_usd: float
    prefix_write_premium_usd: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    stored: bool
    def __init__(self, status: _Optional[str] = ..., reason: _Optional[str] = ..., origin_request_id: _Optional[str] = ..., saved_usd: _Optional[float] = ..., predicted_read_tokens: _Optional[int] = ..., predicted_write_tokens: _Optional[int] = ..., prefix_saved_usd: _Optional[float] = ..., prefix_write_premium_usd: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ..., stored: _Optional[bool] = ...) -> None: ...

class AttemptRecord(_message.Message):
    __slots__ = ("deployment", "model_id", "outcome", "reason", "hedge", "input_tokens", "output_tokens", "cost_usd")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HEDGE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    model_id: str
    outcome: str
    reason: str
    hedge: bool
    input_tokens: int
    output_tokens: int
    cost_usd: float
    def __init__(self, deployment: _Optional[str] = ..., model_id: _Optional[str] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., hedge: _Optional[bool] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class BillingEvent(_message.Message):
    __slots__ = ("event_id", "request")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    request: RequestSummary
    def __init__(self, event_id: _Optional[str] = ..., request: _Optional[_Union[RequestSummary, _Mapping]] = ...) -> None: ...

class ContentRecord(_message.Message):
    __slots__ = ("mode", "sha256", "chars", "text")
    MODE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CHARS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    mode: str
    sha256: str
    chars: int
    text: str
    def __init__(self, mode: _Optional[str] = ..., sha256: _Optional[str] = ..., chars: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class AuthDecision(_message.Message):
    __slots__ = ("key_id", "tier", "admitted", "refusal_reason")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_REASON_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    tier: str
    admitted: bool
    refusal_reason: str
    def __init__(self, key_id: _Optional[str] = ..., tier: _Optional[str] = ..., admitted: _Optional[bool] = ..., refusal_reason: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("event_id", "request", "auth", "safety_verdict", "prompt", "completion", "output_verdict")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    SAFETY_VERDICT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    request: RequestSummary
    auth: AuthDecision
    safety_verdict: _verdict_pb2.Verdict
    prompt: ContentRecord
    completion: ContentRecord
    output_verdict: _verdict_pb2.Verdict
    def __init__(self, event_id: _Optional[str] = ..., request: _Optional[_Union[RequestSummary, _Mapping]] = ..., auth: _Optional[_Union[AuthDecision, _Mapping]] = ..., safety_verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ..., prompt: _Optional[_Union[ContentRecord, _Mapping]] = ..., completion: _Optional[_Union[ContentRecord, _Mapping]] = ..., output_verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ...) -> None: ...

class ReviewEvent(_message.Message):
    __slots__ = ("event_id", "request", "input_verdict", "output_verdict", "prompt", "completion")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    INPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    request: RequestSummary
    input_verdict: _verdict_pb2.Verdict
    output_verdict: _verdict_pb2.Verdict
    prompt: ContentRecord
    completion: ContentRecord
    def __init__(self, event_id: _Optional[str] = ..., request: _Optional[_Union[RequestSummary, _Mapping]] = ..., input_verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ..., output_verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ..., prompt: _Optional[_Union[ContentRecord, _Mapping]] = ..., completion: _Optional[_Union[ContentRecord, _Mapping]] = ...) -> None: ...
