"""Key lifecycle and the tenant store, on the embedded store."""

from __future__ import annotations

import pytest

from sluice.auth.core import Authenticator
from sluice.auth.key_admin import KeyAdmin
from sluice.auth.keystore import RedisKeyStore
from sluice.auth.tenants import TenantDirectory, TenantStore, validate_tenant
from sluice.config import tenant_codec
from sluice.config.auth import AuthSettings
from sluice.config.tenants import Limits, ScopeLimits, Tenant
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.redis import connect

SETTINGS = AuthSettings()


@pytest.fixture
async def client(request):
    client = connect(f"memory://admin-{request.node.name}")
    await client.flushall()
    yield client
    await client.aclose()


class _Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


async def test_rotation_keeps_the_old_key_for_the_overlap_only(client):
    clock = _Clock()
    store = RedisKeyStore(client)
    admin = KeyAdmin(store, b"p", lambda t: t == "acme", default_overlap_s=3600, clock_ms=clock)
    auth = Authenticator(store, b"p", {"acme": Tenant()}, clock_ms=clock)
    old, old_key = await admin.create("acme", "ci")
    clock.ms += 1
    new, new_key, previous = await admin.rotate(old.key_id, overlap_s=60)
    assert previous.replaced_by == new.key_id and previous.expires_ms == clock.ms + 60_000
    assert new.description == "ci"
    clock.ms += 59_999
    assert (await auth.authenticate(old_key)).key_id == old.key_id
    clock.ms += 1
    with pytest.raises(SluiceError) as err:
        await auth.authenticate(old_key)
    assert err.value.reason is Reason.INVALID_API_KEY
    assert (await auth.authenticate(new_key)).key_id == new.key_id
    with pytest.raises(SluiceError, match="revoked or expired"):
        await admin.rotate(old.key_id)
    assert [k.key_id for k in await admin.list("acme")] == [old.key_id, new.key_id]


async def test_revoke_is_idempotent_and_seed_keys_do_not_come_back_on_restart(client):
    store = RedisKeyStore(client)
    admin = KeyAdmin(store, b"p", lambda t: True, 60)
    seeded = await admin.ensure_key("sk-sluice-seed1-" + "a" * 48, "acme")
    first = await admin.revoke(seeded.key_id)
    assert (await admin.revoke(seeded.key_id)).revoked_ms == first.revoked_ms
    # A restart applies the configured seed keys again: the revocation stays.
    assert (await admin.ensure_key("sk-sluice-seed1-" + "a" * 48, "acme")).revoked


async def test_unknown_key_or_tenant_is_not_found_and_long_descriptions_are_refused(client):
    admin = KeyAdmin(RedisKeyStore(client), b"p", lambda t: t == "acme", 60)
    for call in (admin.revoke("nope"), admin.rotate("nope"), admin.create("ghost")):
        with pytest.raises(SluiceError) as err:
            await call
        assert err.value.reason is Reason.NOT_FOUND
    with pytest.raises(SluiceError) as err:
        await admin.create("acme", "x" * 201)
    assert err.value.field_violations[0].field == "description"


async def test_the_file_wins_only_with_a_higher_revision(client):
    store = TenantStore(client)
    assert await store.seed({"acme": Tenant(tier="free")}, revision=1) == ["acme"]
    await store.put("acme", Tenant(tier="enterprise"))  # a runtime change: revision 2
    assert await store.seed({"acme": Tenant(tier="free")}, revision=2) == []  # a restart: kept
    assert (await store.get("acme")).tenant.tier == "enterprise"
    assert await store.seed({"acme": Tenant(tier="standard")}, revision=3) == ["acme"]  # bumped file
    stored = await store.get("acme")
    assert (stored.tenant.tier, stored.revision) == ("standard", 3)


async def test_put_with_a_stale_expected_revision_conflicts(client):
    store = TenantStore(client)
    created = await store.put("acme", Tenant(), expected_revision=0)
    with pytest.raises(SluiceError) as err:
        await store.put("acme", Tenant(), expected_revision=0)
    assert err.value.reason is Reason.REVISION_CONFLICT
    assert (await store.put("acme", Tenant(tier="free"), expected_revision=created.revision)).revision == 2


async def test_directory_follows_changes_and_refuses_tenants_of_unknown_tiers(client):
    store = TenantStore(client)
    await store.put("acme", Tenant(tier="free"))
    await store.put("odd", Tenant(tier="gold"))  # written by a deployment with other tiers
    directory = TenantDirectory(store, SETTINGS.limits_for, refresh_s=1)
    assert await directory.refresh()
    assert directory.get("acme").tier == "free" and directory.get("odd") is None
    assert not await directory.refresh()  # nothing changed: no reload
    await store.put("acme", Tenant(tier="free", limits=ScopeLimits(key=Limits(requests_per_minute=7))))
    assert await directory.refresh()
    assert directory.limits("acme").key.requests_per_minute == 7
    assert directory.limits("acme").tenant == SETTINGS.tiers["free"].tenant


def test_invalid_tenants_name_every_bad_field():
    with pytest.raises(SluiceError) as err:
        validate_tenant("Bad Id", {"tier": "gold", "region": "", "limits": {"key": {"requests_per_minute": 0}}},
                        set(SETTINGS.tiers))
    assert {v.field for v in err.value.field_violations} == {
        "tenant.tenant_id", "tenant.region", "tenant.limits.key.requests_per_minute"}
    with pytest.raises(SluiceError) as err:
        validate_tenant("ok", {"tier": "gold"}, set(SETTINGS.tiers))
    assert [v.field for v in err.value.field_violations] == ["tenant.tier"]


def test_a_tenant_round_trips_through_its_message_without_pinning_tier_values():
    tenant = Tenant(tier="free", allowed_models=["claude-haiku-4-5"],
                    limits=ScopeLimits(key=Limits(requests_per_minute=5)))
    message = tenant_codec.to_message("acme", tenant, revision=4)
    assert message.limits.key.requests_per_minute == 5
    assert not message.limits.key.HasField("tokens_per_minute")
    assert message.limits.when_store_down == ""  # the tier's policy, not pinned
    again = Tenant.model_validate(tenant_codec.fields_of(message))
    assert again == tenant
    assert again.limits.model_fields_set == {"key"}
