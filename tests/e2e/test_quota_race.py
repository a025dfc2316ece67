"""Two gateway processes on one Redis, 200 concurrent clients on one key: the key's tenant
turns hot, so most admissions are answered from slices of its bucket (services/auth/sluice/
auth/slices.py), and the limit holds with the same tolerance as without them."""

from __future__ import annotations

import asyncio
import math
import secrets
import time

import httpx
import pytest
import redis

from tests.infra.processes import free_port
from tests.infra.sluice_cluster import SluiceCluster

pytestmark = pytest.mark.e2e

N = 50  # requests per minute on the key
CLIENTS = 200


@pytest.fixture(scope="module")
def two_gateways(redis_url, tmp_path_factory):
    tenant = "race" + secrets.token_hex(3)
    key = f"sk-sluice-race{secrets.token_hex(3)}-{secrets.token_hex(24)}"
    clusters: list[SluiceCluster] = []
    # One gateway of each mode on the same Redis: the limit holds across replicas whatever their
    # mode (two meshes would be twelve processes under 200 clients on two cores).
    for name, mode in (("a", "all"), ("b", "mesh")):
        cluster = SluiceCluster(mode, redis_url, tmp_path_factory.mktemp(f"race-{name}"),
                                simulator=clusters[0].simulator if clusters else None)
        auth = cluster.config["auth"]
        auth["tenants"][tenant] = {"tier": "standard", "region": "local",
                                   "limits": {"key": {"requests_per_minute": N}}}
        auth["seed_keys"].append({"key": key, "tenant": tenant})
        # The test is about the race, not the store timeout: 200 requests at
        # once on two cores can hold a Redis reply in the event loop's queue
        # past the default 500 ms, and those requests then get the store-down
        # policy's 503 instead of 200/429 (seen once in CI).
        auth["quota_timeout_ms"] = 10_000
        # Hot from the 10th request a second (default 50): the burst is 100 requests per
        # gateway and the bucket 50, which the default would spend before the tenant is hot.
        auth["hot_tenant_rps"] = 10
        auth["slice_max_share"] = 0.1
        if mode == "mesh":  # slicing is auth's: read its own metrics
            cluster.config["services"]["auth"]["metrics"] = f"127.0.0.1:{free_port()}"
        clusters.append(cluster.start())
    yield clusters, tenant, key
    for cluster in reversed(clusters):
        cluster.stop()


async def _burst(bases: list[str], key: str) -> list[int]:
    body = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "race"}]}
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, timeout=30, limits=limits) as client:
        go = asyncio.Event()

        async def one(i: int) -> int:
            await go.wait()
            return (await client.post(f"{bases[i % 2]}/v1/messages", json=body)).status_code

        tasks = [asyncio.create_task(one(i)) for i in range(CLIENTS)]
        await asyncio.sleep(0)  # every task waiting at the start line
        go.set()
        return await asyncio.gather(*tasks)


def test_admitted_count_is_the_limit_across_two_gateway_processes(two_gateways, redis_url):
    clusters, tenant, key = two_gateways
    started = time.monotonic()
    codes = asyncio.run(_burst([c.http_base for c in clusters], key))
    elapsed_ms = (time.monotonic() - started) * 1000
    admitted, refused = codes.count(200), codes.count(429)
    # None lost: every client got an answer, and only these two.
    assert admitted + refused == CLIENTS, sorted(set(codes))
    # GCRA admits the full bucket plus what refills while the burst runs.
    tolerance = math.ceil(N * elapsed_ms / 60_000)
    assert N <= admitted <= N + tolerance, (admitted, tolerance)

    # The hot path was taken: admissions answered from slices, on both gateways together.
    sliced = sum(_metric(c, 'sluice_quota_slice_decisions_total{path="local"}') for c in clusters)
    print(f"race: {admitted} admitted of {CLIENTS}, {sliced:.0f} from slices, tolerance {tolerance}")
    assert sliced > 0

    # None double-counted: once the slices' unused units are back (at the latest when they
    # expire), the bucket holds exactly what was admitted (less what refilled since), so no
    # admission was charged twice or not at all.
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    try:
        while True:
            tat = float(client.get(f"sluice:q:{{{tenant}}}:k:{key.split('-')[2]}:rpm"))
            seconds, micros = client.time()
            held = (tat - (seconds * 1000 + micros / 1000)) * N / 60_000
            if held <= admitted + 0.01 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        client.close()
    since_ms = (time.monotonic() - started) * 1000
    assert admitted - N * since_ms / 60_000 - 1 <= held <= admitted + 0.01, (held, admitted)


def _metric(cluster: SluiceCluster, series: str) -> float:
    """A series of the process that runs auth (the `all` process, or a mesh's auth)."""
    where = cluster.config["services"]["auth"].get("metrics") or f"127.0.0.1:{cluster.metrics_port}"
    for line in httpx.get(f"http://{where}/metrics", timeout=5).text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0
