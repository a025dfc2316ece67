import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sluice.auth.v1 import principal_pb2 as _principal_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvalidateCacheRequest(_message.Message):
    __slots__ = ("all", "tenant_id", "alias", "prompt_version")
    ALL_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    all: bool
    tenant_id: str
    alias: str
    prompt_version: str
    def __init__(self, all: _Optional[bool] = ..., tenant_id: _Optional[str] = ..., alias: _Optional[str] = ..., prompt_version: _Optional[str] = ...) -> None: ...

class InvalidateCacheResponse(_message.Message):
    __slots__ = ("scope", "namespace", "generation")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    scope: str
    namespace: str
    generation: int
    def __init__(self, scope: _Optional[str] = ..., namespace: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("key_id", "tenant_id", "description", "create_time", "revoke_time", "expire_time", "replaced_by")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLACED_BY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    tenant_id: str
    description: str
    create_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    replaced_by: str
    def __init__(self, key_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replaced_by: _Optional[str] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("tenant_id", "description")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    description: str
    def __init__(self, tenant_id: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key", "api_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    api_key: str
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., api_key: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class RevokeKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("key_id", "overlap_seconds")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    overlap_seconds: int
    def __init__(self, key_id: _Optional[str] = ..., overlap_seconds: _Optional[int] = ...) -> None: ...

class RotateKeyResponse(_message.Message):
    __slots__ = ("replacement", "previous")
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    replacement: CreateKeyResponse
    previous: ApiKey
    def __init__(self, replacement: _Optional[_Union[CreateKeyResponse, _Mapping]] = ..., previous: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("requests_per_minute", "tokens_per_minute", "concurrent_streams", "daily_spend_usd", "monthly_spend_usd")
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    DAILY_SPEND_USD_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_SPEND_USD_FIELD_NUMBER: _ClassVar[int]
    requests_per_minute: int
    tokens_per_minute: int
    concurrent_streams: int
    daily_spend_usd: float
    monthly_spend_usd: float
    def __init__(self, requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., concurrent_streams: _Optional[int] = ..., daily_spend_usd: _Optional[float] = ..., monthly_spend_usd: _Optional[float] = ...) -> None: ...

class ScopeLimits(_message.Message):
    __slots__ = ("tenant", "key", "when_store_down")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    WHEN_STORE_DOWN_FIELD_NUMBER: _ClassVar[int]
    tenant: Limits
    key: Limits
    when_store_down: str
    def __init__(self, tenant: _Optional[_Union[Limits, _Mapping]] = ..., key: _Optional[_Union[Limits, _Mapping]] = ..., when_store_down: _Optional[str] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("tenant_id", "tier", "region", "allowed_models", "default_model", "safety_profile", "limits", "revision", "audit_content", "continue_midstream", "routing", "cache", "country")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    SAFETY_PROFILE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_MIDSTREAM_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    tier: str
    region: str
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    default_model: str
    safety_profile: str
    limits: ScopeLimits
    revision: int
    audit_content: str
    continue_midstream: bool
    routing: TenantRouting
    cache: _principal_pb2.CachePolicy
    country: str
    def __init__(self, tenant_id: _Optional[str] = ..., tier: _Optional[str] = ..., region: _Optional[str] = ..., allowed_models: _Optional[_Iterable[str]] = ..., default_model: _Optional[str] = ..., safety_profile: _Optional[str] = ..., limits: _Optional[_Union[ScopeLimits, _Mapping]] = ..., revision: _Optional[int] = ..., audit_content: _Optional[str] = ..., continue_midstream: _Optional[bool] = ..., routing: _Optional[_Union[TenantRouting, _Mapping]] = ..., cache: _Optional[_Union[_principal_pb2.CachePolicy, _Mapping]] = ..., country: _Optional[str] = ...) -> None: ...

class TenantRouting(_message.Message):
    __slots__ = ("aliases", "model_map", "cost_target_usd")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ModelMapEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    MODEL_MAP_FIELD_NUMBER: _ClassVar[int]
    COST_TARGET_USD_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.ScalarMap[str, str]
    model_map: _containers.ScalarMap[str, str]
    cost_target_usd: float
    def __init__(self, aliases: _Optional[_Mapping[str, str]] = ..., model_map: _Optional[_Mapping[str, str]] = ..., cost_target_usd: _Optional[float] = ...) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetTenantResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ...) -> None: ...

class PutTenantRequest(_message.Message):
    __slots__ = ("tenant", "expected_revision")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    expected_revision: int
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class PutTenantResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ...) -> None: ...
