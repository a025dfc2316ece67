"""Fixtures of the end-to-end tests beyond the session's own (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conformance import start_cluster
from tests.infra.node_sdk import ensure_ts_sdk
from tests.infra.sluice_cluster import SimulatorProcess, SluiceCluster


@pytest.fixture(scope="session", params=["all", "mesh"])
def conf(request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[SluiceCluster]:
    """Sluice for the conformance suite (tests/e2e/conformance.py's tenants), in both run modes."""
    cluster = start_cluster(request.param, redis_url, tmp_path_factory.mktemp(f"conformance-{request.param}"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ts_sdk() -> None:
    """The official TypeScript SDK, installed once per machine (~/.cache/sluice/npm)."""
    ensure_ts_sdk()


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    """A simulator of the module's own: its deployment profiles are the module's to change."""
    sim = SimulatorProcess(tmp_path_factory.mktemp("simulator"))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()
