"""The auth key store on a real Redis server."""

from __future__ import annotations

import pytest

from sluice.auth.core import Authenticator
from sluice.auth.key_admin import KeyAdmin
from sluice.auth.keystore import RedisKeyStore
from sluice.config.tenants import Tenant
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.redis import connect

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_client(redis_url):
    client = connect(redis_url)
    assert await client.ping()
    yield client
    await client.aclose()


async def test_key_round_trips_through_real_redis_hashed(redis_client):
    auth = Authenticator(RedisKeyStore(redis_client), b"pepper", {"acme": Tenant(tier="enterprise", region="local")})
    _, api_key = await KeyAdmin(RedisKeyStore(redis_client), b"pepper", lambda t: True, 60).create("acme")
    key_id = api_key.split("-")[2]
    secret = api_key.split("-")[3]

    stored = await redis_client.hgetall(f"sluice:auth:key:{key_id}")
    assert stored[b"tenant"] == b"acme"
    assert secret.encode() not in b"".join(stored.values()), "the secret itself must never be stored"

    principal = await auth.authenticate(api_key)
    assert (principal.tenant_id, principal.key_id, principal.tier) == ("acme", key_id, "enterprise")

    # A second authenticator (another gateway process) sees the same key.
    other = Authenticator(RedisKeyStore(redis_client), b"pepper", {"acme": Tenant()})
    assert (await other.authenticate(api_key)).key_id == key_id


async def test_wrong_pepper_rejects_even_with_the_right_key(redis_client):
    _, api_key = await KeyAdmin(RedisKeyStore(redis_client), b"pepper-a", lambda t: True, 60).create("t")
    with pytest.raises(SluiceError) as err:
        await Authenticator(RedisKeyStore(redis_client), b"pepper-b", {"t": Tenant()}).authenticate(api_key)
    assert err.value.reason is Reason.INVALID_API_KEY


async def test_unreachable_redis_is_dependency_unavailable():
    client = connect("redis://127.0.0.1:1/0")
    auth = Authenticator(RedisKeyStore(client), b"p", {"t": Tenant()})
    with pytest.raises(SluiceError) as err:
        await auth.authenticate("sk-sluice-abcd-" + "a" * 48)
    assert err.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    await client.aclose()
