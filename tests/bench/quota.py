"""The auth + quota stage alone, in-process, as the gateway's hot path runs it.

For each store (the embedded in-process one and a real redis-server over a
socket): one request at a time (latency) and 10 at once (throughput) of
  admit      QuotaKeeper.admit with every limit of both scopes, and
  auth+admit a cached key check followed by that admit,
the latter being what a request waits for before Sluice starts on it. The
concurrent figure includes settling each admission (one more script run).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from sluice.auth.core import Authenticator
from sluice.auth.decision_cache import DecisionCache
from sluice.auth.key_admin import KeyAdmin
from sluice.auth.keystore import RedisKeyStore
from sluice.auth.quota import QuotaKeeper
from sluice.auth.quota_store import LocalQuotaStore, RedisQuotaStore
from sluice.auth.v1 import auth_service_pb2 as pb
from sluice.catalog import load_catalog
from sluice.config.tenants import Limits, ScopeLimits, Tenant
from sluice.llm.v1 import messages_pb2 as m
from sluice.storage.redis import connect
from tests.infra.sluice_cluster import UNREACHABLE_LIMITS

# Issue #3's target for the stage.
TARGET_P50_MS = 1.0
CONCURRENCY = 10


@dataclass
class QuotaResult:
    store: str
    op: str
    checks: int
    p50_ms: float
    p99_ms: float
    per_second_serial: float
    per_second_concurrent: float


async def _measure(op, settle, n: int) -> tuple[list[float], float, float]:
    """Times `op`; settles each admission after, untimed, as the gateway does
    off the response path (and so open stream leases do not pile up)."""
    for _ in range(200):  # warm: connections, script cache, code paths
        await settle(await op())
    latencies = []
    settling = 0.0
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        admitted = await op()
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        await settle(admitted)
        settling += time.perf_counter() - t1
    serial = n / (time.perf_counter() - started - settling)

    async def worker() -> None:
        for _ in range(n // CONCURRENCY):
            await settle(await op())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    concurrent = (n // CONCURRENCY * CONCURRENCY) / (time.perf_counter() - started)
    return latencies, serial, concurrent


async def _bench_store(name: str, redis_url: str | None, n: int) -> list[QuotaResult]:
    client = connect(redis_url or "memory://bench-quota")
    store = RedisQuotaStore(client) if redis_url else LocalQuotaStore()
    limits = ScopeLimits(tenant=Limits(**UNREACHABLE_LIMITS), key=Limits(**UNREACHABLE_LIMITS))
    keeper = QuotaKeeper(store, lambda _: limits, load_catalog(), 900)
    auth = Authenticator(RedisKeyStore(client), b"bench-pepper", {"bench": Tenant()},
                         DecisionCache(ttl_s=300, max_entries=1000))
    _, api_key = await KeyAdmin(RedisKeyStore(client), b"bench-pepper", lambda _: True, 0).create("bench")
    principal = await auth.authenticate(api_key)

    def request(p) -> pb.AdmitRequest:
        return pb.AdmitRequest(principal=p, model="claude-sonnet-4-6", estimated_input_tokens=12,
                               max_output_tokens=64)

    async def admit() -> pb.AdmitResponse:
        return await keeper.admit(request(principal))

    async def auth_admit() -> pb.AdmitResponse:
        return await keeper.admit(request(await auth.authenticate(api_key)))

    async def settle(admitted: pb.AdmitResponse) -> None:
        await keeper.settle(pb.SettleRequest(principal=principal, reservation=admitted.reservation,
                                             model="claude-sonnet-4-6",
                                             usage=m.Usage(input_tokens=12, output_tokens=40)))

    out = []
    try:
        for op_name, op in (("admit", admit), ("auth+admit", auth_admit)):
            latencies, serial, concurrent = await _measure(op, settle, n)
            q = statistics.quantiles(latencies, n=100)
            out.append(QuotaResult(name, op_name, len(latencies), q[49] * 1000, q[98] * 1000, serial, concurrent))
    finally:
        await client.aclose()
    return out


def run(redis_url: str, n: int = 5000) -> list[QuotaResult]:
    async def both() -> list[QuotaResult]:
        return await _bench_store("embedded", None, n) + await _bench_store("redis", redis_url, n)

    return asyncio.run(both())


def table(results: list[QuotaResult]) -> str:
    lines = [f"{'store':<9} {'op':<11} {'checks':>7} {'p50 ms':>8} {'p99 ms':>8} {'/s (1)':>9} "
             f"{f'/s ({CONCURRENCY})':>9}"]
    for r in results:
        lines.append(f"{r.store:<9} {r.op:<11} {r.checks:>7} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
                     f"{r.per_second_serial:>9.0f} {r.per_second_concurrent:>9.0f}")
    return "\n".join(lines)


def verdict(results: list[QuotaResult]) -> str:
    worst = max(r.p50_ms for r in results if r.op == "auth+admit")
    figures = ", ".join(f"{r.store} {r.p50_ms:.3f} ms" for r in results if r.op == "auth+admit")
    return (f"Target: auth+quota stage <= {TARGET_P50_MS:.0f} ms at p50: {figures} -> "
            + ("met" if worst <= TARGET_P50_MS else "NOT met"))
