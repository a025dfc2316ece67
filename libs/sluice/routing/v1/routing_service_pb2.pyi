from sluice.auth.v1 import principal_pb2 as _principal_pb2
from sluice.cache.v1 import prefix_pb2 as _prefix_pb2
from sluice.llm.v1 import wire_pb2 as _wire_pb2
from sluice.routing.v1 import candidate_pb2 as _candidate_pb2
from sluice.routing.v1 import decision_pb2 as _decision_pb2
from sluice.routing.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteRequest(_message.Message):
    __slots__ = ("principal", "requested_model", "max_tokens", "count_tokens", "request", "estimated_input_tokens")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COUNT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    requested_model: str
    max_tokens: int
    count_tokens: bool
    request: _wire_pb2.WireRequest
    estimated_input_tokens: int
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., requested_model: _Optional[str] = ..., max_tokens: _Optional[int] = ..., count_tokens: _Optional[bool] = ..., request: _Optional[_Union[_wire_pb2.WireRequest, _Mapping]] = ..., estimated_input_tokens: _Optional[int] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("candidates", "catalog_version", "model", "allowed_geos", "deployments_version", "decision", "prefix")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_GEOS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[_candidate_pb2.Candidate]
    catalog_version: str
    model: _model_pb2.ModelInfo
    allowed_geos: _containers.RepeatedScalarFieldContainer[str]
    deployments_version: str
    decision: _decision_pb2.RouteDecision
    prefix: _prefix_pb2.PrefixPlan
    def __init__(self, candidates: _Optional[_Iterable[_Union[_candidate_pb2.Candidate, _Mapping]]] = ..., catalog_version: _Optional[str] = ..., model: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ..., allowed_geos: _Optional[_Iterable[str]] = ..., deployments_version: _Optional[str] = ..., decision: _Optional[_Union[_decision_pb2.RouteDecision, _Mapping]] = ..., prefix: _Optional[_Union[_prefix_pb2.PrefixPlan, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("principal", "limit", "before_id", "after_id", "lifecycle")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    limit: int
    before_id: str
    after_id: str
    lifecycle: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., limit: _Optional[int] = ..., before_id: _Optional[str] = ..., after_id: _Optional[str] = ..., lifecycle: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("data", "has_more")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[_model_pb2.ModelInfo]
    has_more: bool
    def __init__(self, data: _Optional[_Iterable[_Union[_model_pb2.ModelInfo, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("principal", "model_id")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    model_id: str
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., model_id: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.ModelInfo
    def __init__(self, model: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ...) -> None: ...
