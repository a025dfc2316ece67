"""Tokens reserved at admission are settled to real usage however a stream
ends: finished early, failed upstream, or cancelled by the client."""

from __future__ import annotations

import secrets

import anthropic
import pytest
import redis

from tests.e2e.helpers import sdk, user, wait_until
from tests.infra.sluice_cluster import SluiceCluster

pytestmark = pytest.mark.e2e

TPM = 6_000  # refills 0.1 token per ms: slow enough to read reservations from
MAX_TOKENS = 4_000


@pytest.fixture(scope="module", params=["all", "mesh"])
def metered(request, redis_url, tmp_path_factory):
    cluster = SluiceCluster(request.param, redis_url, tmp_path_factory.mktemp(f"settle-{request.param}"))
    tenant = "tpm" + secrets.token_hex(3)
    keys = {case: f"sk-sluice-{case}{secrets.token_hex(3)}-{secrets.token_hex(24)}"
            for case in ("done", "failed", "cancel")}
    auth = cluster.config["auth"]
    auth["tenants"][tenant] = {"tier": "standard", "region": "local",
                               "limits": {"key": {"tokens_per_minute": TPM}}}
    auth["seed_keys"] += [{"key": k, "tenant": tenant} for k in keys.values()]
    cluster.start()
    client = redis.Redis.from_url(redis_url)
    yield cluster, client, tenant, keys
    client.close()
    cluster.stop()


def held_tokens(client: redis.Redis, tenant: str, api_key: str) -> float:
    """Tokens the key's per-minute bucket holds now (GCRA: TAT ahead of now)."""
    tat = client.get(f"sluice:q:{{{tenant}}}:k:{api_key.split('-')[2]}:tpm")
    if tat is None:
        return 0.0
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros / 1000
    return max(float(tat) - now_ms, 0.0) * TPM / 60_000


def settled(client, tenant, api_key) -> None:
    wait_until(lambda: held_tokens(client, tenant, api_key) < 300, timeout=10,
               what=f"the {MAX_TOKENS}-token reservation to settle to real usage")


def test_a_stream_that_ends_early_settles_to_its_usage(metered):
    cluster, client, tenant, keys = metered
    message = sdk(cluster.http_base, keys["done"]).messages.create(
        model="claude-sonnet-4-6", max_tokens=MAX_TOKENS, messages=user("short answer"))
    assert message.usage.output_tokens < 100
    settled(client, tenant, keys["done"])


def test_a_stream_that_fails_upstream_settles_to_what_it_used(metered):
    cluster, client, tenant, keys = metered
    with pytest.raises(anthropic.APIStatusError):
        with sdk(cluster.http_base, keys["failed"]).messages.stream(
                model="claude-sonnet-4-6", max_tokens=MAX_TOKENS,
                messages=user("fail late [[sim:error_after=3]]")) as stream:
            for _ in stream.text_stream:
                pass
    settled(client, tenant, keys["failed"])


def test_a_cancelled_stream_holds_its_reservation_until_it_settles(metered):
    cluster, client, tenant, keys = metered
    with sdk(cluster.http_base, keys["cancel"]).messages.stream(
            model="claude-sonnet-4-6", max_tokens=MAX_TOKENS,
            messages=user("long one [[sim:tokens=400]] [[sim:itl_ms=50]]")) as stream:
        assert next(iter(stream.text_stream))
        # In flight: the whole estimate is reserved.
        assert held_tokens(client, tenant, keys["cancel"]) > MAX_TOKENS * 0.9
    settled(client, tenant, keys["cancel"])
