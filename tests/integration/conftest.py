"""Every Redis-backed integration test runs twice: on one Redis server and on a Redis Cluster
(three primaries, a replica each), so every piece of shared state is shown to work on both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.redis_cluster import LocalRedisCluster
from tests.infra.redis_cluster import redis_cluster as _redis_cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    with _redis_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session", params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """The session's one Redis server (tests/conftest.py), or the Redis Cluster's URL."""
    return store_url(request, request.param)


def store_url(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of the session's Redis of `kind`: "redis" (one server) or "cluster"."""
    if kind == "cluster":
        return request.getfixturevalue("redis_cluster").url
    return request.getfixturevalue("redis_server_url")
