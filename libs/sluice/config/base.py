"""Shared pieces of every settings section: the section base class, address and class-share checks, YAML reading, error formatting."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from sluice.resilience.classes import class_fractions

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


class ConfigError(Exception):
    """The configuration is invalid; the message lists every problem."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"must be host:port, got {value!r}")
    return value


def check_class_shares(value: dict[int, float]) -> dict[int, float]:
    """Shares or thresholds for every shedding class (see sluice.resilience.classes)."""
    return class_fractions(value, "per-class values", complete=True)


# Regions name Kafka topics (sluice.billing.<region>) and storage folders.
Region = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


def read_yaml(path: str | os.PathLike[str], what: str, error: type[Exception]) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from None


def error_fields(err: ValidationError) -> list[tuple[str, str]]:
    """(dotted field path, message) for each problem pydantic found."""
    return [(".".join(str(p) for p in e["loc"]) or "(root)", e["msg"]) for e in err.errors()]


# Redis URL schemes (sluice.storage.redis.connect): one server, a Sentinel-watched primary, a
# Redis Cluster, or the in-process stand-in.
REDIS_URL_SCHEMES = ("memory", "redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel",
                     "redis+cluster", "rediss+cluster")


def check_redis_url(value: str) -> str:
    """`value` if it starts with one of REDIS_URL_SCHEMES and `://`; else ValueError."""
    if value.split("://", 1)[0] not in REDIS_URL_SCHEMES or "://" not in value:
        raise ValueError(f"must start with {', '.join(s + '://' for s in REDIS_URL_SCHEMES)}")
    return value
