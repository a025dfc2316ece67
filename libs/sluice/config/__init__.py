"""Static settings: loaded once at start from YAML plus SLUICE_* environment overrides."""

from sluice.config.settings import ConfigError, Settings, load

__all__ = ["ConfigError", "Settings", "load"]
