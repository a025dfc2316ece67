from sluice.auth.v1 import principal_pb2 as _principal_pb2
from sluice.routing.v1 import candidate_pb2 as _candidate_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteRequest(_message.Message):
    __slots__ = ("principal", "requested_model")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    principal: _principal_pb2.Principal
    requested_model: str
    def __init__(self, principal: _Optional[_Union[_principal_pb2.Principal, _Mapping]] = ..., requested_model: _Optional[str] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("candidates", "catalog_version")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[_candidate_pb2.Candidate]
    catalog_version: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[_candidate_pb2.Candidate, _Mapping]]] = ..., catalog_version: _Optional[str] = ...) -> None: ...
