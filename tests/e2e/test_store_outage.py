"""Redis killed under a running gateway and brought back: each tier's
declared store-down policy holds, and service recovers without a restart."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.e2e.helpers import wait_until
from tests.infra.processes import free_port
from tests.infra.redis_server import LocalRedis
from tests.infra.sluice_cluster import SluiceCluster

pytestmark = pytest.mark.e2e

BODY = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def own_redis():
    # Its own server, since this test kills it; durable, so keys survive.
    server = LocalRedis(durable=True)
    yield server
    server.stop()


def _post(base: str, key: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/messages", json=BODY, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, timeout=10)


def _store_up(cluster: SluiceCluster) -> float:
    """auth's gauge: the `all` process's metrics, or the auth process's in a mesh."""
    where = cluster.config["services"]["auth"].get("metrics") or f"127.0.0.1:{cluster.metrics_port}"
    text = httpx.get(f"http://{where}/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith("sluice_quota_store_up "))
    return float(line.split()[1])


@pytest.mark.parametrize("mode", ["all", "mesh"])
def test_fail_open_keeps_serving_fail_closed_refuses_and_both_recover(mode, own_redis, tmp_path):
    cluster = SluiceCluster(mode, own_redis.url, tmp_path)
    if mode == "mesh":  # the quota store is auth's: read its own metrics
        cluster.config["services"]["auth"]["metrics"] = f"127.0.0.1:{free_port()}"
    process = "all" if mode == "all" else "auth"
    strict_key = f"sk-sluice-strict{secrets.token_hex(2)}-{secrets.token_hex(24)}"
    auth = cluster.config["auth"]
    auth["tiers"]["standard"]["when_store_down"] = "fail_open"
    auth["tiers"]["free"] = {"key": {"requests_per_minute": 1000}, "when_store_down": "fail_closed"}
    auth["tenants"]["bank"] = {"tier": "free", "region": "local"}
    auth["seed_keys"].append({"key": strict_key, "tenant": "bank"})
    auth["quota_retry_interval_seconds"] = 0.2
    # A short cache TTL, so the outage outlives every cached decision and
    # identity runs on the stale window.
    auth["decision_cache_ttl_seconds"] = 0.2
    cluster.start()
    try:
        assert _post(cluster.http_base, cluster.api_key).status_code == 200
        first = _post(cluster.http_base, strict_key)
        assert first.status_code == 200, first.text

        own_redis.kill()
        # Both keys were seen before the outage; the fail_open tenant is
        # served on the local limiter, the fail_closed one is refused.
        for _ in range(3):
            served = _post(cluster.http_base, cluster.api_key)
            assert served.status_code == 200, served.text
            assert int(served.headers["anthropic-ratelimit-requests-remaining"]) > 0
        refused = _post(cluster.http_base, strict_key)
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "api_error"
        assert "fails closed" in refused.json()["error"]["message"]
        assert _store_up(cluster) == 0

        own_redis.start()
        wait_until(lambda: _post(cluster.http_base, strict_key).status_code == 200, timeout=15,
                   what="the fail_closed tenant to be served again after Redis came back")
        assert _store_up(cluster) == 1
        assert _post(cluster.http_base, cluster.api_key).status_code == 200
        assert all(proc.poll() is None for proc in cluster.procs.values())
        assert "quota store unreachable" in cluster.log_text(process)
        assert "quota store reachable again" in cluster.log_text(process)
    finally:
        cluster.stop()
