"""The fleet store on a real Redis: two inference replicas write, a router
reads one view; the cost shift is one integral over every replica."""

from __future__ import annotations

import uuid

import pytest

from sluice.routing.controller import DEPLOYMENT, CostController
from sluice.storage.fleet import FleetStore
from sluice.storage.redis import connect

pytestmark = pytest.mark.integration


@pytest.fixture
async def region(redis_url):
    name = f"it-{uuid.uuid4().hex[:8]}"  # keys of this test only
    yield name
    client = connect(redis_url)
    keys = [k async for k in client.scan_iter(match=f"sluice:fleet:{{{name}}}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def store(redis_url: str, region: str, replica: str, clock=lambda: 1_000_000.0) -> FleetStore:
    return FleetStore(connect(redis_url), region, replica, "test", window_minutes=5, clock=clock)


async def test_latency_and_breakers_from_two_replicas_make_one_view(redis_url, region):
    a, b, reader = store(redis_url, region, "a"), store(redis_url, region, "b"), store(redis_url, region, "r")
    try:
        for seconds in (0.2, 0.4):
            a.observe_ttft("anthropic-global", seconds)
        b.observe_ttft("anthropic-global", 0.6)
        b.observe_output_rate("anthropic-global", 80.0)
        a.breaker("vertex-eu", 1_000_030.0)  # open for 30 s more
        b.breaker("bedrock-eu-west-1", 999_990.0)  # its probe time has passed
        await a.flush()
        await b.flush()
        view = await reader.refresh()
        lat = view.latency["anthropic-global"]
        assert (lat.samples, round(lat.ttft_s, 3), lat.output_tps, lat.rate_samples) == (3, 0.4, 80.0, 1)
        assert view.unhealthy == {"vertex-eu"}
        a.breaker("vertex-eu", None)  # closed again
        await a.flush()
        assert (await reader.refresh()).unhealthy == frozenset()
    finally:
        for s in (a, b, reader):
            await s.close()


async def test_cost_shift_is_shared_and_clamped(redis_url, region):
    one, two = store(redis_url, region, "1"), store(redis_url, region, "2")
    c1, c2 = CostController(gain=0.1, export=False), CostController(gain=0.1, export=False)
    try:
        c1.observe(DEPLOYMENT, 0.01, 0.03)  # +0.2
        c2.observe(DEPLOYMENT, 0.01, 0.02)  # +0.1
        c1.adopt((await one.refresh(c1.drain())).shifts)
        c2.adopt((await two.refresh(c2.drain())).shifts)
        c1.adopt((await one.refresh(c1.drain())).shifts)
        assert c1.shift([DEPLOYMENT]) == pytest.approx(0.3) == c2.shift([DEPLOYMENT])
        for _ in range(30):
            c2.observe(DEPLOYMENT, 0.01, 0.05)  # +0.4 each, clamped locally at 1
        view = await two.refresh({DEPLOYMENT: 5.0})  # a replica that pushed far past 1
        assert view.shifts[DEPLOYMENT] == 1.0  # clamped in the store too
    finally:
        await one.close()
        await two.close()


async def test_a_store_that_is_down_costs_a_counted_failure_not_an_error():
    broken = FleetStore(connect("redis://127.0.0.1:1/0"), "x", "r", "test")
    broken.observe_ttft("d", 0.1)
    broken.breaker("d", 2e9)
    await broken.flush()  # logged and counted; the breaker news is kept for the next try
    assert broken._breakers == {"d": 2e9}
    await broken.close()


async def test_whatever_is_in_the_store_does_not_stop_the_reader(redis_url, region):
    client = connect(redis_url)
    prefix = f"sluice:fleet:{{{region}}}:"
    await client.hset(f"{prefix}lat:{int(1_000_000.0 // 60)}", mapping={"d|n": "x", "d|ttft": "nan", "junk": "1"})
    await client.hset(f"{prefix}breakers", mapping={"d|gone": "1.0", "e|bad": "soon", "f|live": "1000100"})
    await client.hset(f"{prefix}cost-shift", mapping={"deployment": "inf", "tenant:t": "0.25"})
    reader = store(redis_url, region, "r")
    try:
        view = await reader.refresh()
        assert view.unhealthy == {"f"} and view.shifts == {"tenant:t": 0.25}
        assert await client.hkeys(f"{prefix}breakers") == [b"f|live"]  # the dead and the unreadable cleared
    finally:
        await reader.close()
        await client.aclose()
