from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Principal(_message.Message):
    __slots__ = ("tenant_id", "key_id", "tier", "region", "allowed_models", "default_model", "safety_profile", "audit_content", "continue_midstream", "routing_aliases", "model_map", "cost_target_usd", "cache", "country")
    class RoutingAliasesEntry(_message.Message):
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
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    SAFETY_PROFILE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_MIDSTREAM_FIELD_NUMBER: _ClassVar[int]
    ROUTING_ALIASES_FIELD_NUMBER: _ClassVar[int]
    MODEL_MAP_FIELD_NUMBER: _ClassVar[int]
    COST_TARGET_USD_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key_id: str
    tier: str
    region: str
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    default_model: str
    safety_profile: str
    audit_content: str
    continue_midstream: bool
    routing_aliases: _containers.ScalarMap[str, str]
    model_map: _containers.ScalarMap[str, str]
    cost_target_usd: float
    cache: CachePolicy
    country: str
    def __init__(self, tenant_id: _Optional[str] = ..., key_id: _Optional[str] = ..., tier: _Optional[str] = ..., region: _Optional[str] = ..., allowed_models: _Optional[_Iterable[str]] = ..., default_model: _Optional[str] = ..., safety_profile: _Optional[str] = ..., audit_content: _Optional[str] = ..., continue_midstream: _Optional[bool] = ..., routing_aliases: _Optional[_Mapping[str, str]] = ..., model_map: _Optional[_Mapping[str, str]] = ..., cost_target_usd: _Optional[float] = ..., cache: _Optional[_Union[CachePolicy, _Mapping]] = ..., country: _Optional[str] = ...) -> None: ...

class CachePolicy(_message.Message):
    __slots__ = ("enabled", "mode", "aliases", "ttl_seconds", "ttl_by_category", "shared_namespace")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TtlByCategoryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTL_BY_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SHARED_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    mode: str
    aliases: _containers.ScalarMap[str, str]
    ttl_seconds: int
    ttl_by_category: _containers.ScalarMap[str, int]
    shared_namespace: str
    def __init__(self, enabled: _Optional[bool] = ..., mode: _Optional[str] = ..., aliases: _Optional[_Mapping[str, str]] = ..., ttl_seconds: _Optional[int] = ..., ttl_by_category: _Optional[_Mapping[str, int]] = ..., shared_namespace: _Optional[str] = ...) -> None: ...
