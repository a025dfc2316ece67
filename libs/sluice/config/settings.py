"""Sluice's static settings.

Read from a YAML file (``--config`` or ``SLUICE_CONFIG``) and overridden by
environment variables: ``SLUICE_<SECTION>__<KEY>``, e.g.
``SLUICE_AUTH__REDIS_URL=redis://10.0.0.5:6379/0``. Every field is checked
before anything binds a port; all problems are reported at once, each named
by its dotted key. Unknown keys are errors, so a typo cannot be ignored.

Each section is declared in its own module of this package (one per service, plus `tenants`
for the tenant domain and `server` for addresses); this module composes them and loads them.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sluice.config.auth import AuthSettings
from sluice.config.base import ConfigError, Region, error_fields, read_yaml
from sluice.config.cache import CacheSettings
from sluice.config.catalog import CatalogSettings
from sluice.config.events import EventsSettings
from sluice.config.gateway import GatewaySettings
from sluice.config.inference import InferenceSettings
from sluice.config.routing import RoutingSettings
from sluice.config.safety import SafetySettings
from sluice.config.server import SERVICE_NAMES, Endpoint, ServerSettings, default_endpoints
from sluice.config.simulator import SimulatorSettings
from sluice.config.sinks import SinksSettings
from sluice.config.telemetry import TelemetrySettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SLUICE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # Region this deployment serves; a tenant of another region is never
    # served here, and events go only to this region's Kafka and spool.
    region: Region = "local"
    services: dict[str, Endpoint] = Field(default_factory=default_endpoints)
    server: ServerSettings = ServerSettings()
    catalog: CatalogSettings = CatalogSettings()
    gateway: GatewaySettings = GatewaySettings()
    auth: AuthSettings = AuthSettings()
    routing: RoutingSettings = RoutingSettings()
    cache: CacheSettings = CacheSettings()
    inference: InferenceSettings = InferenceSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    safety: SafetySettings = SafetySettings()
    events: EventsSettings = EventsSettings()
    sinks: SinksSettings = SinksSettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    @field_validator("services")
    @classmethod
    def _v_services(cls, value: dict[str, Endpoint]) -> dict[str, Endpoint]:
        unknown = sorted(set(value) - set(SERVICE_NAMES))
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; known: {list(SERVICE_NAMES)}")
        merged = default_endpoints()
        merged.update(value)
        return merged

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file (passed as init values).
        return env_settings, init_settings


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    lines += [f"  {field}: {msg}" for field, msg in error_fields(err)]
    return "\n".join(lines)


def load(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Loads and validates settings; raises ConfigError naming every bad key."""
    path = path or os.environ.get("SLUICE_CONFIG") or None
    data: dict[str, Any] = {}
    source = "defaults + environment"
    if path:
        source = f"{path} + environment"
        loaded = read_yaml(path, "config file", ConfigError)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        data = loaded or {}
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
