"""Overload, end to end, in both run modes: Sluice sheds the least important
work first and never enterprise traffic while a lower class is admitted.

Two places shed. A deployment's adaptive concurrency limit (AIMD) shrinks
under a storm of 529s, and each shedding class may fill only its share of
it: background work least, enterprise the whole limit. The gateway's own
overload signal (requests in flight against gateway.max_in_flight) refuses
classes by threshold. Either way the client gets the API's 529
overloaded_error with retry-after.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import user, wait_until
from tests.infra.sluice_cluster import UNREACHABLE_LIMITS, SimulatorProcess, SluiceCluster

MODEL = "claude-sonnet-4-6"
TENANTS = {"ent": {"tier": "enterprise"}, "std": {"tier": "standard"}, "free": {"tier": "free"}}
ALL_TIERS = {t: {"tenant": UNREACHABLE_LIMITS, "key": UNREACHABLE_LIMITS} for t in ("free", "standard", "enterprise")}
# One deployment, so that its limit is the only way to the model.
ONE_DEPLOYMENT = """
version: overload-test-1
residency: {local: [global]}
deployments:
  sim-a: {provider: anthropic, geo: global, max_concurrency: 10}
"""
SLOW_MS = 2500


def _cluster(mode: str, simulator: SimulatorProcess, redis_url: str, workdir: Path, name: str,
             overrides: dict) -> SluiceCluster:
    return SluiceCluster(mode, redis_url, workdir, simulator=simulator, tenants=TENANTS, name=name,
                         overrides={"auth": {"tiers": ALL_TIERS}, **overrides}).start()


@pytest.fixture(scope="module", params=["all", "mesh"])
def storm(request: pytest.FixtureRequest, simulator: SimulatorProcess, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceCluster]:
    workdir = tmp_path_factory.mktemp(f"storm-{request.param}")
    (workdir / "deployments.yaml").write_text(ONE_DEPLOYMENT)
    cluster = _cluster(request.param, simulator, redis_url, workdir, f"storm-{request.param}", {
        "catalog": {"deployments_path": str(workdir / "deployments.yaml")},
        "inference": {"resilience": {
            "initial_concurrency": 10, "attempts_per_candidate": 1, "hedging": False,
            # The storm must shrink the limit, not open the breaker.
            "breaker_consecutive_failures": 10_000, "breaker_min_requests": 10_000}}})
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module", params=["all", "mesh"])
def crowded(request: pytest.FixtureRequest, simulator: SimulatorProcess, redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceCluster]:
    workdir = tmp_path_factory.mktemp(f"crowded-{request.param}")
    (workdir / "deployments.yaml").write_text(ONE_DEPLOYMENT.replace("sim-a", "sim-b"))
    cluster = _cluster(request.param, simulator, redis_url, workdir, f"crowded-{request.param}", {
        "gateway": {"max_in_flight": 4},
        "catalog": {"deployments_path": str(workdir / "deployments.yaml")},
        "inference": {"resilience": {"hedging": False}}})
    try:
        yield cluster
    finally:
        cluster.stop()


def post(cluster: SluiceCluster, tenant: str, priority: str | None = None) -> httpx.Response:
    headers = {"x-api-key": cluster.keys[tenant], "anthropic-version": "2023-06-01"}
    if priority:
        headers["x-sluice-priority"] = priority
    return httpx.post(f"{cluster.http_base}/v1/messages", headers=headers, timeout=60,
                      json={"model": MODEL, "max_tokens": 8, "messages": user("work")})


def requests_at(cluster: SluiceCluster, deployment: str) -> int:
    found = httpx.get(f"{cluster.simulator_base}/_sim/deployments", timeout=5).json().get(deployment)
    return found["requests"] if found else 0


def set_profile(cluster: SluiceCluster, deployment: str, **fields: object) -> None:
    assert httpx.put(f"{cluster.simulator_base}/_sim/deployments/{deployment}", json=fields,
                     timeout=5).status_code == 200


class Held:
    """Requests kept in flight in threads (the deployment is slow); their responses once done."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.responses: list[httpx.Response] = []

    def start(self, call: Callable[[], httpx.Response]) -> None:
        thread = threading.Thread(target=lambda: self.responses.append(call()))
        thread.start()
        self.threads.append(thread)

    def finish(self) -> list[int]:
        for thread in self.threads:
            thread.join()
        return [r.status_code for r in self.responses]


def hold(cluster: SluiceCluster, held: Held, deployment: str, tenant: str, priority: str | None = None) -> None:
    """Starts a request and waits until the deployment has it (it is in flight)."""
    before = requests_at(cluster, deployment)
    held.start(lambda: post(cluster, tenant, priority))
    wait_until(lambda: requests_at(cluster, deployment) > before, 10, "the request to reach the deployment")


def is_shed(response: httpx.Response) -> bool:
    return (response.status_code == 529 and response.json()["error"]["type"] == "overloaded_error"
            and float(response.headers["retry-after"]) >= 1)


def test_after_a_529_storm_free_and_background_work_are_shed_before_standard_and_enterprise(storm):
    set_profile(storm, "sim-a", outcomes=["529"] * 7)
    for _ in range(7):  # each 529 is a drop: the limit goes 10 -> 9 -> ... -> 3
        assert post(storm, "ent").status_code == 529
    set_profile(storm, "sim-a", slow_probability=1.0, slow_ttft_ms=SLOW_MS)
    held = Held()
    hold(storm, held, "sim-a", "ent")  # 1 of 3 in flight
    assert is_shed(post(storm, "free"))  # free: 60% of 3 -> 1 slot, taken
    assert is_shed(post(storm, "std", "background"))  # background: 40% -> none
    assert is_shed(post(storm, "std", "batch"))
    hold(storm, held, "sim-a", "std")  # standard: 85% of 3 -> 2 slots: admitted
    hold(storm, held, "sim-a", "ent")  # enterprise: the whole limit: admitted
    before = requests_at(storm, "sim-a")
    assert is_shed(post(storm, "ent"))  # only now, at the whole limit, is enterprise refused
    assert requests_at(storm, "sim-a") == before  # shed without calling the deployment
    assert held.finish() == [200, 200, 200]


def test_the_gateway_sheds_by_class_as_it_fills_and_enterprise_only_at_its_cap(crowded):
    set_profile(crowded, "sim-b", slow_probability=1.0, slow_ttft_ms=SLOW_MS)
    held = Held()
    for _ in range(3):
        hold(crowded, held, "sim-b", "ent")  # 3 of 4: utilisation 0.75
    before = requests_at(crowded, "sim-b")
    assert is_shed(post(crowded, "free"))  # threshold 0.75
    assert is_shed(post(crowded, "std", "background"))  # 0.6
    assert is_shed(post(crowded, "ent", "batch"))  # batch is class 2 whatever the tier
    assert requests_at(crowded, "sim-b") == before
    hold(crowded, held, "sim-b", "std")  # threshold 0.9: admitted, 4 of 4
    assert is_shed(post(crowded, "ent"))  # enterprise is refused only at the cap
    assert held.finish() == [200, 200, 200, 200]
    assert post(crowded, "free").status_code == 200  # the load is gone: everyone is served


def test_a_priority_sluice_does_not_know_is_a_400_naming_the_header(crowded):
    response = post(crowded, "std", "urgent")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("header x-sluice-priority: must be one of")


def test_the_priority_header_may_be_sent_once(crowded):
    response = httpx.post(f"{crowded.http_base}/v1/messages", timeout=30, headers=[
        ("x-api-key", crowded.keys["std"]), ("anthropic-version", "2023-06-01"),
        ("x-sluice-priority", "background"), ("x-sluice-priority", "interactive")],
        json={"model": MODEL, "max_tokens": 8, "messages": user("twice")})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "header x-sluice-priority: must be sent at most once"
