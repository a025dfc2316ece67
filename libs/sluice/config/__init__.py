"""Static settings: loaded once at start from YAML plus SLUICE_* environment overrides.

`settings` composes the sections; each lives in its own module here (`auth`, `routing`, ...,
`tenants` for the tenant domain, `server` for addresses, `base` for what they share)."""

from sluice.config.base import ConfigError
from sluice.config.settings import Settings, load

__all__ = ["ConfigError", "Settings", "load"]
