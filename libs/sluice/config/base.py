"""Shared pieces of every settings section: the section base class, address and class-share checks, YAML reading, error formatting."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

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


def check_bootstrap(value: str) -> str:
    """`value` if every entry of the comma list ("a:9092, b:9092") is host:port; else ValueError."""
    for part in filter(None, (p.strip() for p in value.split(","))):
        check_address(part)
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


@dataclass(frozen=True)
class RedisUrl:
    """A Redis URL read (`parse_redis_url`): the scheme, the seed nodes (host, port) of a
    `+cluster` or `+sentinel` URL, the primary a Sentinel names, the database, credentials."""

    scheme: str
    nodes: tuple[tuple[str, int], ...] = ()
    primary: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_redis_url(url: str) -> RedisUrl:
    """Reads `url` (one of REDIS_URL_SCHEMES: `redis://host:port/db`,
    `redis+sentinel://h:p[,h:p...]/<primary>[/db]`, `redis+cluster://h:p[,h:p...]`, `rediss+...`
    for TLS, `unix://`, `memory://<name>`). Raises ValueError saying what is wrong, never
    repeating a password."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in REDIS_URL_SCHEMES:
        raise ValueError(f"must start with {', '.join(s + '://' for s in REDIS_URL_SCHEMES)}")
    if scheme in ("memory", "unix"):
        return RedisUrl(scheme)
    credentials, _, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    nodes = []
    for part in hosts.split(","):
        if not part:
            continue  # redis:// alone means localhost, as redis-py reads it
        try:
            one = urlsplit(f"//{part}")
            host, port = one.hostname, one.port
        except ValueError:
            host, port = None, None
        if not host or (port is None and "+" in scheme) or (port is not None and not 0 < port < 65536):
            raise ValueError(f"{part!r} in {scheme}:// is not host:port")
        nodes.append((host, port or 6379))
    if "+" in scheme and not nodes:
        raise ValueError(f"{scheme}:// names no host:port (seed nodes, comma-separated)")
    if scheme in ("redis", "rediss") and len(nodes) > 1:
        raise ValueError(f"{scheme}:// is one server: for several, use {scheme}+cluster:// or +sentinel://")
    segments = [p for p in path.split("?", 1)[0].split("/") if p]  # options after ? are redis-py's
    primary = ""
    if scheme.endswith("+sentinel"):
        if not segments:
            raise ValueError(f"{scheme}:// must name the primary the Sentinels watch: .../<primary name>[/db]")
        primary, segments = segments[0], segments[1:]
    if scheme.endswith("+cluster") and segments:
        raise ValueError(f"{scheme}:// takes no database: a Redis Cluster has only database 0")
    if len(segments) > 1 or (segments and not segments[0].isdigit()):
        raise ValueError(f"the database in a {scheme}:// URL must be a number, as in /0")
    user, _, password = credentials.partition(":") if credentials else ("", "", "")
    return RedisUrl(scheme, tuple(nodes), primary, int(segments[0]) if segments else 0,
                    unquote(user) or None, unquote(password) or None)


def check_redis_url(value: str) -> str:
    """`value` if parse_redis_url reads it; else its ValueError."""
    parse_redis_url(value)
    return value
