from __future__ import annotations

import pytest

from sluice.auth import keys
from sluice.auth.core import Authenticator
from sluice.auth.keystore import RedisKeyStore, StoredKey
from sluice.config.settings import Tenant
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.redis import connect


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


@pytest.fixture
async def auth():
    client = connect("memory://unit-auth")
    await client.flushall()
    yield Authenticator(RedisKeyStore(client), b"pepper", {"acme": Tenant(tier="free", region="eu-west-1")})
    await client.aclose()


async def test_valid_key_gives_the_tenants_principal(auth):
    key = await auth.create_key("acme")
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
    key = await auth.create_key("acme")
    parsed = keys.parse(key)
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(f"sk-sluice-{parsed.key_id}-{'c' * 48}")
    assert err.value.reason is Reason.INVALID_API_KEY and err.value.message == "invalid x-api-key"

    store = auth._store  # noqa: SLF001 - revoke directly; the admin API is a later issue
    stored = await store.get(parsed.key_id)
    await store.put(StoredKey(stored.key_id, stored.tenant_id, stored.salt, stored.digest, revoked=True))
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(key)
    assert err.value.reason is Reason.INVALID_API_KEY


async def test_seed_key_for_unknown_tenant_is_refused(auth):
    with pytest.raises(ValueError, match="unknown tenant"):
        await auth.import_key(keys.generate(), "nobody")
