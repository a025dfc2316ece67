"""Sluice on a Sentinel-watched Redis (redis+sentinel://): keys and limits work, and after the
primary is killed they work again on the promoted replica, found through the Sentinel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from sluice.auth.quota import QuotaKeeper, StoreHealth
from sluice.auth.quota_store import RedisQuotaStore
from sluice.auth.v1 import auth_service_pb2 as pb
from sluice.auth.v1 import principal_pb2
from sluice.catalog import load_catalog
from sluice.config.tenants import Limits, ScopeLimits
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.redis import connect
from tests.infra.redis_cluster import LocalRedisSentinel

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel() -> Iterator[LocalRedisSentinel]:
    watched = LocalRedisSentinel()
    try:
        yield watched
    finally:
        watched.stop()


async def test_limits_hold_through_a_sentinel_failover(sentinel: LocalRedisSentinel):
    client = connect(sentinel.url)
    limits = ScopeLimits(tenant=Limits(requests_per_minute=10), when_store_down="fail_closed")
    keeper = QuotaKeeper(RedisQuotaStore(client), lambda _: limits, load_catalog(), 900, timeout_s=2,
                         health=StoreHealth(retry_s=0.1))
    request = pb.AdmitRequest(principal=principal_pb2.Principal(tenant_id="watched", key_id="k"),
                              model="claude-haiku-4-5", estimated_input_tokens=5, max_output_tokens=5)
    try:
        for _ in range(10):
            await keeper.admit(request)
        await client.execute_command("WAIT", 1, 2000)  # the replica has the bucket
        old = sentinel.primary_port()
        new = await asyncio.to_thread(sentinel.kill_primary_and_wait_for_promotion)
        assert new != old
        # The store answers again through the Sentinel, and still knows the bucket is spent.
        deadline = time.monotonic() + 20
        while True:
            try:
                await keeper.admit(request)
                pytest.fail("the promoted replica forgot the spent bucket")
            except SluiceError as err:
                if err.reason is Reason.RATE_LIMITED:
                    break
                assert err.reason is Reason.DEPENDENCY_UNAVAILABLE  # the gap: fail closed
            assert time.monotonic() < deadline, "no answer from the promoted replica"
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()
