"""Hot tenants served from slices of the shared bucket (services/auth/sluice/auth/slices.py),
over the in-process store, which the Redis store is held to line for line."""

from __future__ import annotations

import asyncio

import pytest

from sluice.auth.quota_store import LimitCheck, LocalQuotaStore
from sluice.auth.slices import RateMeter, SlicingQuotaStore, tenant_of

MINUTE_MS = 60_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """The shared store, counting the calls that reach it (Redis round trips)."""

    def __init__(self, inner: LocalQuotaStore) -> None:
        self.inner, self.admits, self.settles = inner, 0, 0

    async def admit(self, checks, lease_id, lease_ms, charge=True):
        self.admits += 1
        return await self.inner.admit(checks, lease_id, lease_ms, charge)

    async def settle(self, checks, lease_id, deltas, slots=None):
        self.settles += 1
        await self.inner.settle(checks, lease_id, deltas, slots)

    async def release(self, check, members):
        self.settles += 1
        await self.inner.release(check, members)


def rpm(limit: int, tenant: str = "hot", cost: int = 1) -> LimitCheck:
    return LimitCheck("rate", f"sluice:q:{{{tenant}}}:t:rpm", limit, MINUTE_MS, cost)


def streams(limit: int, tenant: str = "hot") -> LimitCheck:
    return LimitCheck("streams", f"sluice:q:{{{tenant}}}:t:streams", limit, 0, 1)


def gateway(shared: Counting, clock: Clock, hot_rps=10, slice_s=1.0, share=0.1) -> SlicingQuotaStore:
    return SlicingQuotaStore(shared, hot_rps, slice_s, share, clock=clock)


async def admit_many(store: SlicingQuotaStore, checks: list[LimitCheck], n: int, prefix="r") -> int:
    outcomes = [await store.admit(checks, f"{prefix}{i}", 900_000) for i in range(n)]
    return sum(allowed for allowed, _ in outcomes)


def test_tenant_is_the_hash_tag():
    assert tenant_of("sluice:q:{acme}:k:key1:rpm") == "acme"


def test_the_meter_sees_a_burst_within_the_second_and_forgets_it_after():
    meter = RateMeter()
    for _ in range(30):
        rate = meter.arrive(10.2)
    assert rate == 30
    assert meter.rate(11.5) == pytest.approx(15)  # half of the previous second still in the window
    assert meter.rate(12.1) == 0


async def test_a_cold_tenant_asks_the_shared_store_every_time():
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    store = gateway(shared, clock, hot_rps=1000)
    assert await admit_many(store, [rpm(100)], 20) == 20
    assert shared.admits == 20


async def test_a_hot_tenant_is_served_from_slices_and_never_past_the_limit():
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    store = gateway(shared, clock, hot_rps=10, share=0.1)
    admitted = await admit_many(store, [rpm(1000)], 3000)
    # The bucket (1000; the clock stands still, nothing refills), not one more.
    assert admitted == 1000
    # Hot after 10 requests; then a slice of 100 (10% of the limit) per round trip, and near the
    # limit request by request (exact) until the edge lapses.
    assert shared.admits < 3000 / 3, shared.admits


async def test_unused_units_go_back_when_the_slice_expires():
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    store = gateway(shared, clock, hot_rps=5, share=0.5)
    assert await admit_many(store, [rpm(100)], 10) == 10  # hot from the 5th: a slice of up to 50
    clock.now += 2  # past the slice's life
    await store.sweep()
    # Only what was admitted stays charged: the rest of the bucket is there for anyone.
    allowed, _ = await shared.inner.admit([rpm(100, cost=90)], "probe", 900_000)
    assert allowed


async def test_two_gateways_slicing_one_bucket_admit_at_most_the_limit():
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    gateways = [gateway(shared, clock, hot_rps=10, share=0.05) for _ in range(2)]

    async def one(i: int) -> bool:
        allowed, _ = await gateways[i % 2].admit([rpm(300)], f"r{i}", 900_000)
        return allowed

    outcomes = await asyncio.gather(*(one(i) for i in range(1000)))
    assert sum(outcomes) == 300


async def test_stream_slots_in_slices_never_exceed_the_concurrency_limit():
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    a, b = gateway(shared, clock, hot_rps=2, share=0.5), gateway(shared, clock, hot_rps=2, share=0.5)
    limit = 10
    held = []
    for i in range(40):
        store = (a, b)[i % 2]
        allowed, _ = await store.admit([streams(limit)], f"s{i}", 900_000)
        if allowed:
            held.append((store, f"s{i}"))
    assert len(held) <= limit
    # Slots come back when their streams end, through the slice that served them.
    for store, lease in held:
        await store.settle([streams(limit)], lease, [0])
    clock.now += 5
    for store in (a, b):
        await store.sweep()
    allowed, _ = await shared.inner.admit([LimitCheck("streams", streams(limit).key, limit, 0, limit)],
                                          "all-of-them", 900_000)
    assert allowed  # every slot free again in the shared set


async def test_token_usage_settles_into_the_slice_and_its_net_into_the_bucket():
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    store = gateway(shared, clock, hot_rps=1, share=0.5)
    tpm = LimitCheck("rate", "sluice:q:{hot}:t:tpm", 10_000, MINUTE_MS, 100)
    for i in range(10):
        allowed, _ = await store.admit([tpm], f"t{i}", 900_000)
        assert allowed
        await store.settle([tpm], f"t{i}", [-60])  # each used 40 of the 100 reserved
    settles_before_return = shared.settles
    clock.now += 5
    await store.sweep()
    assert shared.settles == settles_before_return + 1  # one give-back for the slice
    # 10 requests x 40 tokens charged; everything else is back.
    allowed, states = await shared.inner.admit([tpm.__class__("rate", tpm.key, 10_000, MINUTE_MS, 1)], "p",
                                               900_000, charge=False)
    assert allowed and states[0].remaining == 10_000 - 400 - 1


async def test_near_the_limit_a_refused_refill_gives_everything_back_and_decides_exactly():
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    store = gateway(shared, clock, hot_rps=1, share=0.5)
    other = gateway(shared, clock, hot_rps=10_000)  # a cold gateway on the same bucket
    assert await admit_many(store, [rpm(20)], 5) == 5
    # The other gateway spends most of what is left; this one's next refill cannot be granted.
    assert await admit_many(other, [rpm(20)], 30, prefix="o") <= 15
    admitted_after = await admit_many(store, [rpm(20)], 30, prefix="x")
    allowed, states = await shared.inner.admit([rpm(20)], "probe", 900_000, charge=False)
    assert not allowed and states[0].remaining == 0
    assert 5 + admitted_after <= 20


async def test_a_slot_from_one_replicas_slice_is_freed_by_whichever_replica_settles_it():
    """In a mesh, admit and settle of one request may reach different auth replicas: the slot's
    member travels in the reservation (stream_slots) and the other replica frees it."""
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    a, b = gateway(shared, clock, hot_rps=1, share=0.5), gateway(shared, clock, hot_rps=1, share=0.5)
    limit = 4
    members = []
    for i in range(4):
        allowed, states = await a.admit([streams(limit)], f"s{i}", 900_000)
        assert allowed
        members.append(states[0].slot)
    # Slots from a's slices (the last one exact: a refill of two no longer fits).
    assert sum(m.startswith("slice:") for m in members) >= 2
    for i, member in enumerate(members):  # all settled at b, which never saw them
        await b.settle([streams(limit)], f"s{i}", [0], {streams(limit).key: member} if member else None)
    clock.now += 5
    await a.sweep()
    allowed, _ = await shared.inner.admit([LimitCheck("streams", streams(limit).key, limit, 0, limit)], "all",
                                          900_000)
    assert allowed  # no slot leaked


async def test_a_stream_slice_goes_back_in_one_call_and_sizes_to_the_streams_open():
    shared, clock = Counting(LocalQuotaStore(clock_ms=lambda: 0)), Clock()
    store = gateway(shared, clock, hot_rps=1, share=0.5)
    limit = 1000
    allowed, states = await store.admit([streams(limit)], "s0", 900_000)
    assert allowed and states[0].slot  # from a slice: sized to what is open, not to the rate
    probe = LimitCheck("streams", streams(limit).key, limit, 0, limit - 4)
    assert (await shared.inner.admit([probe], "probe", 900_000, charge=False))[0]  # at most 4 leased
    await store.settle([streams(limit)], "s0", [0], {streams(limit).key: states[0].slot})
    calls = shared.settles
    clock.now += 5
    await store.sweep()
    assert shared.settles == calls + 1  # the slice's free slots: one release
