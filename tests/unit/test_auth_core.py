from __future__ import annotations

import pytest

from sluice.auth import keys
from sluice.auth.core import Authenticator
from sluice.auth.decision_cache import DecisionCache
from sluice.auth.key_admin import KeyAdmin
from sluice.auth.keystore import RedisKeyStore, StoredKey
from sluice.auth.v1 import principal_pb2
from sluice.config.tenants import Tenant
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.redis import StoreUnavailable, connect


@pytest.mark.parametrize("raw", [
    "sk-sluice-abcd-" + "a" * 31,          # secret too short
    "sk-sluice-ab-" + "a" * 48,            # key id too short
    "sk-ant-abcd-" + "a" * 48,             # wrong prefix
    "sk-sluice-abcd-" + "a" * 47 + "é",    # non-ASCII
    "sk-sluice-abcd-" + "a" * 48 + "\r\nx-evil: 1",  # header injection
    "sk-sluice-abcd-" + "a" * 500,         # oversized
    "",
])
def test_malformed_keys_do_not_parse(raw):
    assert keys.parse(raw) is None


def test_generated_keys_parse():
    key = keys.generate()
    parsed = keys.parse(key)
    assert parsed is not None and key == f"sk-sluice-{parsed.key_id}-{parsed.secret}"


def admin_for(store, tenants: dict) -> KeyAdmin:
    return KeyAdmin(store, b"pepper", lambda tenant_id: tenant_id in tenants, default_overlap_s=60)


async def create_key(store, tenants: dict, tenant_id: str = "acme") -> str:
    _, api_key = await admin_for(store, tenants).create(tenant_id)
    return api_key


@pytest.fixture
async def auth():
    client = connect("memory://unit-auth")
    await client.flushall()
    tenants = {"acme": Tenant(tier="free", region="eu-west-1")}
    yield Authenticator(RedisKeyStore(client), b"pepper", tenants)
    await client.aclose()


async def test_valid_key_gives_the_tenants_principal(auth):
    key = await create_key(auth._store, {"acme": Tenant()})
    principal = await auth.authenticate(key)
    assert (principal.tenant_id, principal.tier, principal.region) == ("acme", "free", "eu-west-1")


@pytest.mark.parametrize("key,reason", [
    ("", Reason.MISSING_API_KEY),
    ("garbage", Reason.MALFORMED_API_KEY),
    ("sk-sluice-unknown1-" + "b" * 48, Reason.INVALID_API_KEY),
])
async def test_bad_keys_fail_with_their_reason(auth, key, reason):
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(key)
    assert err.value.reason is reason


async def test_wrong_secret_and_revoked_key_are_invalid(auth):
    key = await create_key(auth._store, {"acme": Tenant()})
    parsed = keys.parse(key)
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(f"sk-sluice-{parsed.key_id}-{'c' * 48}")
    assert err.value.reason is Reason.INVALID_API_KEY and err.value.message == "invalid x-api-key"

    await admin_for(auth._store, {"acme": Tenant()}).revoke(parsed.key_id)
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(key)
    assert err.value.reason is Reason.INVALID_API_KEY


async def test_seed_key_for_unknown_tenant_is_refused(auth):
    with pytest.raises(SluiceError, match="no tenant 'nobody'"):
        await admin_for(auth._store, {"acme": Tenant()}).ensure_key(keys.generate(), "nobody")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_decision_cache_spares_the_store_and_revocation_lands_within_the_ttl():
    client = connect("memory://unit-auth-cache")
    await client.flushall()
    clock = _Clock()
    store = RedisKeyStore(client)
    auth = Authenticator(store, b"pepper", {"acme": Tenant()}, DecisionCache(ttl_s=5, max_entries=10, clock=clock))
    key = await create_key(auth._store, {"acme": Tenant()})
    parsed = keys.parse(key)
    await auth.authenticate(key)
    stored = await store.get(parsed.key_id)
    await store.put(StoredKey(stored.key_id, stored.tenant_id, stored.salt, stored.digest, revoked_ms=1))

    clock.now += 4.9  # still inside the TTL: answered from the cache, no store read
    assert (await auth.authenticate(key)).key_id == parsed.key_id
    clock.now += 0.2  # past the TTL: the store is asked again and says revoked
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(key)
    assert err.value.reason is Reason.INVALID_API_KEY
    await client.aclose()


def test_decision_cache_keeps_no_secret_and_stays_bounded():
    cache = DecisionCache(ttl_s=5, max_entries=3, clock=_Clock())
    api_keys = [keys.generate() for _ in range(5)]
    for n, key in enumerate(api_keys):
        cache.put(key, principal_pb2.Principal(key_id=str(n)))
    assert len(cache) == 3
    assert cache.get(api_keys[0]) is None and cache.get(api_keys[4]).key_id == "4"
    assert not any(key.encode() in slot or key.split("-")[-1].encode() in slot
                   for key in api_keys for slot in cache._entries)


def test_decision_cache_with_zero_ttl_is_off():
    cache = DecisionCache(ttl_s=0, max_entries=3)
    key = keys.generate()
    cache.put(key, principal_pb2.Principal(key_id="x"))
    assert cache.get(key) is None and len(cache) == 0


class _DownStore:
    """A key store whose backend went away after the key was first checked."""

    def __init__(self, inner: RedisKeyStore) -> None:
        self.inner, self.down = inner, False

    async def get(self, key_id: str) -> StoredKey | None:
        if self.down:
            raise StoreUnavailable("key store unavailable: ConnectionError")
        return await self.inner.get(key_id)

    async def put(self, key: StoredKey) -> None:
        await self.inner.put(key)

    async def list(self, tenant_id: str) -> list[StoredKey]:
        return await self.inner.list(tenant_id)


async def test_key_store_outage_serves_recent_decisions_stale_and_refuses_unknown_keys():
    client = connect("memory://unit-auth-stale")
    await client.flushall()
    clock = _Clock()
    store = _DownStore(RedisKeyStore(client))
    auth = Authenticator(store, b"pepper", {"acme": Tenant()},
                         DecisionCache(ttl_s=5, max_entries=10, stale_s=60, clock=clock))
    known, never_seen = await create_key(store, {"acme": Tenant()}), await create_key(store, {"acme": Tenant()})
    await auth.authenticate(known)
    store.down = True
    clock.now += 30  # past the TTL, inside the stale window
    assert (await auth.authenticate(known)).tenant_id == "acme"
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(never_seen)
    assert err.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    clock.now += 40  # past the stale window too
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(known)
    assert err.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    await client.aclose()
