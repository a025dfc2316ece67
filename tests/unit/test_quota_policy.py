"""What auth does when the shared quota store cannot answer: each tier's
declared policy, the local limiter behind fail-open, and recovery."""

from __future__ import annotations

import asyncio

import pytest

from sluice.auth.quota import QuotaKeeper, StoreHealth
from sluice.auth.quota_store import LimitCheck, LimitState, LocalQuotaStore
from sluice.auth.v1 import auth_service_pb2 as pb
from sluice.auth.v1 import principal_pb2
from sluice.catalog import load_catalog
from sluice.config.tenants import Limits, ScopeLimits
from sluice.gateway.http_facade import error_response
from sluice.llm.v1 import messages_pb2 as m
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.redis import StoreUnavailable
from sluice.telemetry import metrics

CATALOG = load_catalog()


class _FlakyStore:
    """A shared store that can be switched off (refusing) or made slow."""

    def __init__(self) -> None:
        self.inner = LocalQuotaStore()
        self.mode = "up"
        self.admits = 0

    async def admit(self, checks: list[LimitCheck], lease_id: str, lease_ms: int, charge: bool = True
                    ) -> tuple[bool, list[LimitState]]:
        self.admits += 1
        if self.mode == "down":
            raise StoreUnavailable("quota store unavailable: ConnectionError")
        if self.mode == "slow":
            await asyncio.sleep(10)
        return await self.inner.admit(checks, lease_id, lease_ms, charge)

    async def settle(self, checks: list[LimitCheck], lease_id: str, deltas: list[int], slots=None) -> None:
        if self.mode != "up":
            raise StoreUnavailable("quota store unavailable: ConnectionError")
        await self.inner.settle(checks, lease_id, deltas, slots)

    async def release(self, check: LimitCheck, members: list[str]) -> None:
        if self.mode != "up":
            raise StoreUnavailable("quota store unavailable: ConnectionError")
        await self.inner.release(check, members)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _keeper(store: _FlakyStore, policy: str, clock: _Clock, rpm: int = 3) -> QuotaKeeper:
    limits = ScopeLimits(key=Limits(requests_per_minute=rpm), when_store_down=policy)
    return QuotaKeeper(store, lambda _: limits, CATALOG, 900, fallback=LocalQuotaStore(), timeout_s=0.05,
                       health=StoreHealth(retry_s=1.0, clock=clock))


def _admit(q: QuotaKeeper) -> pb.AdmitResponse:
    principal = principal_pb2.Principal(tenant_id="acme", key_id="k1")
    return q.admit(pb.AdmitRequest(principal=principal, model="claude-haiku-4-5", estimated_input_tokens=1,
                                   max_output_tokens=1))


def _count(policy: str, outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("sluice_quota_store_down_decisions_total",
                                             {"policy": policy, "outcome": outcome}) or 0.0


async def test_fail_closed_refuses_with_unavailable_and_says_why():
    store, clock = _FlakyStore(), _Clock()
    q = _keeper(store, "fail_closed", clock)
    before = _count("fail_closed", "refused")
    store.mode = "down"
    with pytest.raises(SluiceError) as err:
        await _admit(q)
    assert err.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert err.value.mapping.http_status == 503
    assert "fails closed" in str(err.value)
    assert _count("fail_closed", "refused") == before + 1
    assert metrics.REGISTRY.get_sample_value("sluice_quota_store_up") == 0


async def test_fail_open_still_enforces_the_limits_locally_and_settles_there():
    store, clock = _FlakyStore(), _Clock()
    q = _keeper(store, "fail_open", clock, rpm=2)
    store.mode = "down"
    first = await _admit(q)
    assert first.reservation.local
    assert first.rate_limit_headers["anthropic-ratelimit-requests-remaining"] == "1"
    await _admit(q)
    with pytest.raises(SluiceError) as err:
        await _admit(q)
    assert err.value.reason is Reason.RATE_LIMITED
    # A locally admitted request settles locally, even once Redis is back.
    store.mode = "up"
    await q.settle(pb.SettleRequest(principal=principal_pb2.Principal(tenant_id="acme", key_id="k1"),
                                    reservation=first.reservation, usage=m.Usage(input_tokens=1)))


async def test_an_outage_is_tried_once_per_retry_interval_and_recovery_needs_no_restart():
    store, clock = _FlakyStore(), _Clock()
    q = _keeper(store, "fail_open", clock, rpm=100)
    store.mode = "down"
    for _ in range(5):
        assert (await _admit(q)).reservation.local
    assert store.admits == 1  # the rest went straight to the policy
    store.mode = "up"
    assert (await _admit(q)).reservation.local  # still inside the retry interval
    clock.now += 1.0
    assert not (await _admit(q)).reservation.local
    assert metrics.REGISTRY.get_sample_value("sluice_quota_store_up") == 1


async def test_a_slow_store_counts_as_down():
    store, clock = _FlakyStore(), _Clock()
    q = _keeper(store, "fail_open", clock)
    store.mode = "slow"
    admitted = await asyncio.wait_for(_admit(q), timeout=2)
    assert admitted.reservation.local


async def test_settle_against_a_down_store_is_an_unavailable_error():
    store, clock = _FlakyStore(), _Clock()
    q = _keeper(store, "fail_open", clock)
    admitted = await _admit(q)
    store.mode = "down"
    with pytest.raises(SluiceError) as err:
        await q.settle(pb.SettleRequest(principal=principal_pb2.Principal(tenant_id="acme", key_id="k1"),
                                        reservation=admitted.reservation, usage=m.Usage(input_tokens=1)))
    assert err.value.reason is Reason.DEPENDENCY_UNAVAILABLE


async def test_the_local_store_forgets_expired_entries():
    now = [0.0]
    store = LocalQuotaStore(clock_ms=lambda: now[0], sweep_every=1)
    for i in range(100):
        await store.admit([LimitCheck("rate", f"k{i}", 10, 60_000, 1)], "lease", 1000)
    assert len(store) == 100
    now[0] += 60_000 + 6_000 + 1_000  # past every TAT and its grace
    await store.admit([LimitCheck("rate", "fresh", 10, 60_000, 1)], "lease", 1000)
    assert len(store) == 1


def test_the_facade_puts_the_rate_limit_headers_on_a_429():
    err = SluiceError(Reason.RATE_LIMITED, "rate limit exceeded", retry_after_s=12.4, metadata={
        "anthropic-ratelimit-requests-limit": "3", "anthropic-ratelimit-requests-remaining": "0",
        "other": "not a header"})
    response = error_response(err, "req_1")
    assert response.status == 429
    assert response.headers["retry-after"] == "12"
    assert response.headers["anthropic-ratelimit-requests-limit"] == "3"
    assert "other" not in response.headers


async def test_a_refusal_whose_waits_all_read_zero_is_still_a_retryable_429_not_an_error():
    """Seen under load: a rate check refused with a sub-millisecond wait,
    truncated to 0, once made the refusal itself fail (max of nothing)."""
    from sluice.auth.quota import _Named, _rejection

    named = [_Named(LimitCheck("rate", "k", 10, 60_000, 1), "requests", "tenant:t")]
    err = _rejection(named, [LimitState(0, 5, 0)], {})
    assert err.reason is Reason.RATE_LIMITED and err.retry_after_s and err.retry_after_s > 0


async def test_the_local_store_never_reports_a_zero_wait_for_a_refusal():
    store = LocalQuotaStore(clock_ms=lambda: 1_000_000.25)
    checks = [LimitCheck("rate", "sluice:q:{t}:t:rpm", 3, 60_000, 1)]
    for _ in range(3):
        assert (await store.admit(checks, "l", 1000, True))[0]
    allowed, (state,) = await store.admit(checks, "l", 1000, True)
    assert not allowed and state.retry_after_ms >= 1
