"""Session fixtures: real Redis and Kafka, and Sluice in both run modes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.kafka_broker import kafka_bootstrap as _kafka_bootstrap
from tests.infra.redis_server import redis_url as _redis_url
from tests.infra.sluice_cluster import SluiceCluster


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """One real Redis server for the session."""
    with _redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(redis_server_url: str) -> str:
    """The Redis the tests use: the one server (tests/integration widens it to a cluster too)."""
    return redis_server_url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with _kafka_bootstrap() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session", params=["all", "mesh"])
def cluster(request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[SluiceCluster]:
    """Sluice started as one process (`all`) or as a mesh of six, both with the simulator."""
    workdir = tmp_path_factory.mktemp(f"sluice-{request.param}")
    running = SluiceCluster(request.param, redis_url, workdir).start()
    try:
        yield running
    finally:
        running.stop()
