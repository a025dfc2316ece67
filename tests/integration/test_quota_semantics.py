"""What each limit does, held against both stores: the Lua scripts on a real
Redis, and the in-process LocalQuotaStore (embedded mode, fail-open fallback)."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from sluice.auth.quota import QuotaKeeper
from sluice.auth.quota_store import LocalQuotaStore, RedisQuotaStore
from sluice.auth.v1 import auth_service_pb2 as pb
from sluice.auth.v1 import principal_pb2
from sluice.catalog import load_catalog
from sluice.config.tenants import Limits, ScopeLimits
from sluice.llm.v1 import messages_pb2 as m
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.redis import connect
from tests.integration.conftest import store_url

pytestmark = pytest.mark.integration

PRINCIPAL = principal_pb2.Principal(tenant_id="acme", key_id="k1", tier="standard")
CATALOG = load_catalog()


class _Stores:
    """One kind of store, and how many keys it holds."""

    def __init__(self, store, count) -> None:
        self.store, self.count = store, count


@pytest.fixture(params=["redis", "cluster", "local"])
async def stores(request):
    if request.param == "local":
        local = LocalQuotaStore()

        async def count() -> int:
            return len(local)

        yield _Stores(local, count)
        return
    client = connect(store_url(request, request.param))
    await client.flushdb()
    yield _Stores(RedisQuotaStore(client), client.dbsize)
    await client.aclose()


def keeper(stores: _Stores, tenant=Limits(), key=Limits(), lease_s=900.0) -> QuotaKeeper:
    limits = ScopeLimits(tenant=tenant, key=key)
    return QuotaKeeper(stores.store, lambda tenant_id: limits, CATALOG, lease_s)


def admit(q: QuotaKeeper, input_tokens=10, max_tokens=10, model="claude-haiku-4-5"):
    return q.admit(pb.AdmitRequest(principal=PRINCIPAL, model=model, estimated_input_tokens=input_tokens,
                                   max_output_tokens=max_tokens))


def settle(q: QuotaKeeper, admitted: pb.AdmitResponse, input_tokens=0, output_tokens=0, model="claude-haiku-4-5"):
    return q.settle(pb.SettleRequest(principal=PRINCIPAL, reservation=admitted.reservation, model=model,
                                     usage=m.Usage(input_tokens=input_tokens, output_tokens=output_tokens)))


async def test_requests_per_minute_admits_the_limit_then_refuses_with_details(stores):
    q = keeper(stores, key=Limits(requests_per_minute=3))
    remaining = [int((await admit(q)).rate_limit_headers["anthropic-ratelimit-requests-remaining"]) for _ in range(3)]
    assert remaining == [2, 1, 0]
    with pytest.raises(SluiceError) as err:
        await admit(q)
    e = err.value
    assert e.reason is Reason.RATE_LIMITED and e.mapping.http_status == 429
    assert [(v.subject, v.description) for v in e.quota_violations] == [
        ("key:k1", "requests per minute: limit 3 reached")]
    # The bucket refills one request every 20 s.
    assert 0 < e.retry_after_s <= 20
    assert e.metadata["anthropic-ratelimit-requests-limit"] == "3"
    assert e.metadata["anthropic-ratelimit-requests-remaining"] == "0"


async def test_a_refused_request_charges_nothing(stores):
    q = keeper(stores, tenant=Limits(requests_per_minute=100), key=Limits(tokens_per_minute=50))
    await admit(q, input_tokens=20, max_tokens=20)
    with pytest.raises(SluiceError):
        await admit(q, input_tokens=20, max_tokens=20)  # 80 > 50 tokens
    # Only the first request counted against the tenant's requests.
    ok = await admit(q, input_tokens=1, max_tokens=1)
    assert ok.rate_limit_headers["anthropic-ratelimit-requests-remaining"] == "98"


async def test_settle_returns_unused_tokens_and_charges_overuse(stores):
    q = keeper(stores, key=Limits(tokens_per_minute=1000))
    started = time.monotonic()
    first = await admit(q, input_tokens=100, max_tokens=400)  # reserves 500
    assert int(first.rate_limit_headers["anthropic-ratelimit-tokens-remaining"]) == 500
    await settle(q, first, input_tokens=100, output_tokens=50)  # used 150: 350 back
    probe = await admit(q, input_tokens=0, max_tokens=1)
    # 1000 - 150 used - 1 probe, plus what refilled (1 token per 60 ms) since the first admit.
    refilled = math.ceil(1000 * (time.monotonic() - started) / 60)
    assert 848 <= int(probe.rate_limit_headers["anthropic-ratelimit-tokens-remaining"]) <= 849 + refilled
    await settle(q, probe, output_tokens=500)  # used 499 more than reserved
    with pytest.raises(SluiceError) as err:
        await admit(q, input_tokens=100, max_tokens=300)
    assert err.value.quota_violations[0].description == "tokens per minute: limit 1000 reached"


async def test_a_request_larger_than_the_limit_is_told_waiting_cannot_help(stores):
    q = keeper(stores, key=Limits(tokens_per_minute=100))
    with pytest.raises(SluiceError) as err:
        await admit(q, input_tokens=50, max_tokens=64)
    assert err.value.retry_after_s is None
    assert err.value.reason is Reason.LIMIT_EXCEEDED_BY_REQUEST and not err.value.mapping.retryable
    assert "needs 114, more than the limit of 100" in err.value.quota_violations[0].description


async def test_concurrent_streams_are_slots_freed_by_settle_or_lease_expiry(stores):
    q = keeper(stores, tenant=Limits(concurrent_streams=2), lease_s=0.3)
    a, _ = await admit(q), await admit(q)
    with pytest.raises(SluiceError) as err:
        await admit(q)
    assert err.value.quota_violations[0].subject == "tenant:acme"
    await settle(q, a)
    await admit(q)  # the settled slot is free again
    # Nobody settles the other two (a gateway died): their leases expire.
    deadline = time.monotonic() + 5
    while True:
        try:
            await admit(q)
            break
        except SluiceError:
            assert time.monotonic() < deadline, "stream leases never expired"
            await asyncio.sleep(0.05)


async def test_daily_spend_reserves_at_model_prices_and_settles_to_actual(stores):
    # claude-haiku-4-5: $1 in / $5 out per million tokens.
    q = keeper(stores, key=Limits(daily_spend_usd=0.01))  # 10_000 micro-USD
    first = await admit(q, input_tokens=1000, max_tokens=1000)  # reserves 1000 + 5000
    assert first.reservation.spend_micro_usd == 6000
    with pytest.raises(SluiceError) as err:
        await admit(q, input_tokens=1000, max_tokens=1000)
    assert err.value.quota_violations[0].description == "daily spend (micro-USD): limit 10000 reached"
    await settle(q, first, input_tokens=1000, output_tokens=100)  # really cost 1500
    await admit(q, input_tokens=1000, max_tokens=1000)


async def test_unknown_model_is_priced_as_the_dearest(stores):
    q = keeper(stores)
    cheap = await admit(q, model="claude-haiku-4-5")
    unknown = await admit(q, model="no-such-model")
    assert unknown.reservation.spend_micro_usd > cheap.reservation.spend_micro_usd


async def test_no_limits_means_no_store_round_trip(stores):
    q = keeper(stores)
    response = await admit(q)
    assert response.rate_limit_headers == {} and await stores.count() == 0


async def test_peek_charges_nothing_and_refuses_once_the_limit_is_spent(stores):
    q = keeper(stores, key=Limits(requests_per_minute=2, tokens_per_minute=1000))
    for _ in range(3):
        assert (await q.peek(PRINCIPAL))["anthropic-ratelimit-requests-remaining"] == "1"
    await admit(q)
    await admit(q)
    with pytest.raises(SluiceError) as err:
        await q.peek(PRINCIPAL)
    assert err.value.reason is Reason.RATE_LIMITED and err.value.retry_after_s > 0
