from sluice.llm.v1 import wire_pb2 as _wire_pb2
from sluice.routing.v1 import candidate_pb2 as _candidate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateRequest(_message.Message):
    __slots__ = ("candidates", "request", "allowed_geos", "priority", "continue_midstream", "buffered")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_GEOS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_MIDSTREAM_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[_candidate_pb2.Candidate]
    request: _wire_pb2.WireRequest
    allowed_geos: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    continue_midstream: bool
    buffered: bool
    def __init__(self, candidates: _Optional[_Iterable[_Union[_candidate_pb2.Candidate, _Mapping]]] = ..., request: _Optional[_Union[_wire_pb2.WireRequest, _Mapping]] = ..., allowed_geos: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ..., continue_midstream: _Optional[bool] = ..., buffered: _Optional[bool] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("event", "attempt", "timing", "events")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    event: _wire_pb2.WireEvent
    attempt: Attempt
    timing: Timing
    events: _wire_pb2.WireEvents
    def __init__(self, event: _Optional[_Union[_wire_pb2.WireEvent, _Mapping]] = ..., attempt: _Optional[_Union[Attempt, _Mapping]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., events: _Optional[_Union[_wire_pb2.WireEvents, _Mapping]] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("upstream_ms",)
    UPSTREAM_MS_FIELD_NUMBER: _ClassVar[int]
    upstream_ms: float
    def __init__(self, upstream_ms: _Optional[float] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("candidate", "deployment", "model_id", "outcome", "reason", "hedge", "usage", "time_to_first_event_ms")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HEDGE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_EVENT_MS_FIELD_NUMBER: _ClassVar[int]
    candidate: int
    deployment: str
    model_id: str
    outcome: str
    reason: str
    hedge: bool
    usage: bytes
    time_to_first_event_ms: float
    def __init__(self, candidate: _Optional[int] = ..., deployment: _Optional[str] = ..., model_id: _Optional[str] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., hedge: _Optional[bool] = ..., usage: _Optional[bytes] = ..., time_to_first_event_ms: _Optional[float] = ...) -> None: ...

class CountTokensRequest(_message.Message):
    __slots__ = ("candidates", "request", "allowed_geos")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_GEOS_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[_candidate_pb2.Candidate]
    request: _wire_pb2.WireRequest
    allowed_geos: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, candidates: _Optional[_Iterable[_Union[_candidate_pb2.Candidate, _Mapping]]] = ..., request: _Optional[_Union[_wire_pb2.WireRequest, _Mapping]] = ..., allowed_geos: _Optional[_Iterable[str]] = ...) -> None: ...

class CountTokensResponse(_message.Message):
    __slots__ = ("input_tokens", "body", "model_id")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    body: bytes
    model_id: str
    def __init__(self, input_tokens: _Optional[int] = ..., body: _Optional[bytes] = ..., model_id: _Optional[str] = ...) -> None: ...

class DeploymentHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeploymentHealthResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentState]
    def __init__(self, deployments: _Optional[_Iterable[_Union[DeploymentState, _Mapping]]] = ...) -> None: ...

class DeploymentState(_message.Message):
    __slots__ = ("deployment", "breaker", "retry_in_s", "limit", "in_flight", "ttft_p95_s")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    RETRY_IN_S_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    TTFT_P95_S_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    breaker: str
    retry_in_s: float
    limit: int
    in_flight: int
    ttft_p95_s: float
    def __init__(self, deployment: _Optional[str] = ..., breaker: _Optional[str] = ..., retry_in_s: _Optional[float] = ..., limit: _Optional[int] = ..., in_flight: _Optional[int] = ..., ttft_p95_s: _Optional[float] = ...) -> None: ...
