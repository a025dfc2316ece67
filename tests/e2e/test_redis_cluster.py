"""Sluice whole, in both run modes, on a Redis Cluster (three primaries, a replica each): keys
and tenants seeded, limits enforced, answers cached and found again, streams served; every
piece of shared state on the cluster, as a region that outgrew one Redis would run it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.helpers import sdk, user
from tests.infra.redis_cluster import LocalRedisCluster
from tests.infra.redis_cluster import redis_cluster as _redis_cluster
from tests.infra.sluice_cluster import UNREACHABLE_LIMITS, SimulatorProcess, SluiceCluster

pytestmark = pytest.mark.e2e

TENANTS = {
    "rc-limited": {"tier": "standard", "region": "local", "limits": {"key": {"requests_per_minute": 3}}},
    # A random nonce in a short prompt can score as an injection under the default profile
    # (see tests/e2e/test_cache.py); the creative profile blocks only at 0.999.
    "rc-cached": {"tier": "standard", "region": "local", "cache": {"mode": "read-write"}, "safety_profile": "creative"},
}


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    with _redis_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module", params=["all", "mesh"])
def on_cluster(request: pytest.FixtureRequest, simulator: SimulatorProcess, redis_cluster: LocalRedisCluster,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceCluster]:
    sluice = SluiceCluster(request.param, redis_cluster.url, tmp_path_factory.mktemp(f"rc-{request.param}"),
                           simulator=simulator, tenants=TENANTS, name=f"rc-{request.param}", overrides={
                               "auth": {"tiers": {"standard": {"tenant": UNREACHABLE_LIMITS,
                                                               "key": UNREACHABLE_LIMITS}}},
                               # The cache on the cluster too (cache.redis_url empty = auth's).
                               "cache": {"prefix_scope": f"rc{uuid.uuid4().hex[:8]}"}})
    sluice.start()
    try:
        yield sluice
    finally:
        sluice.stop()


def post(cluster: SluiceCluster, tenant: str, text: str) -> httpx.Response:
    return httpx.post(f"{cluster.http_base}/v1/messages", timeout=60, json={
        "model": "claude-haiku-4-5", "max_tokens": 16, "messages": user(text)},
        headers={"x-api-key": cluster.keys[tenant], "anthropic-version": "2023-06-01"})


def test_answers_and_streams_with_every_store_on_the_cluster(on_cluster):
    client = sdk(on_cluster.http_base, on_cluster.keys["rc-cached"])
    answer = client.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=user("hello cluster"))
    assert answer.content and answer.usage.output_tokens > 0
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=16, messages=user("stream it")) as stream:
        text = "".join(stream.text_stream)
    assert text


def test_a_key_limit_on_the_cluster_refuses_the_fourth_request(on_cluster):
    codes = [post(on_cluster, "rc-limited", f"limited {i}").status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]


def test_the_response_cache_on_the_cluster_finds_an_answer_again(on_cluster):
    text = f"What is two plus two? {uuid.uuid4().hex}"
    first, second = post(on_cluster, "rc-cached", text), post(on_cluster, "rc-cached", text)
    assert first.headers["x-sluice-cache"] == "miss" and second.headers["x-sluice-cache"] == "hit"
    assert second.json() == first.json()
