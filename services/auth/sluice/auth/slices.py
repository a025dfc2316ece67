"""Hot tenants: a slice of the shared bucket, leased and spent locally.

Every admission is one Lua call on the Redis that holds its tenant's keys (one hash tag per
tenant, so one shard of a cluster). A tenant sending most of a region's traffic would make
that shard the bottleneck. So once a tenant sends at least `hot_rps` requests a second to
this process, its limits are served from *slices*: one ADMIT charges the shared bucket for
what the next `slice_s` seconds of this process's traffic needs (at most `max_share` of each
limit), and requests then take from the slice in memory. Unused units go back (SETTLE with
the negative rest) when the slice expires, when the tenant cools down, or when a refill is
refused (the tenant is then near its limit and is decided request by request, exactly, for
`slice_s`; a refusal then holds, for requests of no smaller cost, until its retry-after,
so a hot tenant over its limit is refused without a round trip each).

The bound (README, "Hot tenants"): a slice is charged to the shared bucket before any of it
is spent, so slicing never admits past a limit; what it costs is precision the other way.
Across G processes at most G x max_share of a limit sits in slices, unused, for at most
`slice_s`, so near the limit a request may be refused on one gateway while another holds
units it does not need, and the rate-limit headers' `remaining` is this process's view
(the shared bucket's at the last refill, plus what its slice still holds). Token and spend
limits are settled to actual usage inside the slice, and the slice's net settles to the
shared bucket when it is returned.

`SlicingQuotaStore` is a QuotaStore wrapping the shared one: the keeper above does not know.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from sluice.auth.quota_store import LimitCheck, LimitState, QuotaStore, stream_members
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


def tenant_of(key: str) -> str:
    """The tenant a quota key belongs to: its hash tag (`sluice:q:{tenant}:...`)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1:end] if start >= 0 and end > start else key


class RateMeter:
    """Requests per second of one tenant at this process, over a sliding second (the
    previous second's count, weighted by how much of it the window still covers, plus the
    current one's): a burst is seen within it, not a second later."""

    def __init__(self) -> None:
        self._second = 0
        self._current = 0
        self._previous = 0

    def arrive(self, now_s: float) -> float:
        """Counts one request at `now_s` (seconds); returns the rate, requests/s."""
        second = int(now_s)
        if second != self._second:
            self._previous = self._current if second == self._second + 1 else 0
            self._current = 0
            self._second = second
        self._current += 1
        return self.rate(now_s)

    def rate(self, now_s: float) -> float:
        second = int(now_s)
        if second > self._second + 1:
            return 0.0
        if second == self._second + 1:
            return self._current * (1 - (now_s - second))
        return self._previous * (1 - (now_s - second)) + self._current


@dataclass
class _Slice:
    """Units of one limit leased from the shared bucket. Rate and budget limits hold a
    count (`available`, negative when settled usage overran it); stream limits hold slots,
    each a member of the shared sorted set, free or in use by a request."""

    check: LimitCheck
    lease_id: str
    expires_s: float
    available: int = 0
    free: list[str] = field(default_factory=list)
    # The shared bucket's remaining and reset when the slice was taken (for headers).
    remaining: int = 0
    reset_ms: int = 0
    returned: bool = False

    def covers(self, check: LimitCheck, now_s: float) -> bool:
        if self.returned or now_s >= self.expires_s or check.limit != self.check.limit:
            return False
        return len(self.free) >= 1 if check.kind == "streams" else self.available >= check.cost

    def state(self) -> LimitState:
        held = len(self.free) if self.check.kind == "streams" else self.available
        return LimitState(max(self.remaining + held, 0), self.reset_ms, 0)


@dataclass
class _Tenant:
    meter: RateMeter = field(default_factory=RateMeter)
    hot: bool = False
    # Decided request by request until then: a refill was refused, the limit is near.
    exact_until_s: float = 0.0
    slices: dict[str, _Slice] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Stream slots of this tenant taken from slices here and not yet settled.
    open_streams: int = 0
    # The store's last refusal: until when, and per key (the cost refused, its state).
    refusal: tuple[float, dict[str, tuple[int, LimitState]]] | None = None


class SlicingQuotaStore:
    """A QuotaStore (quota_store.QuotaStore) that serves hot tenants from slices of the
    shared store `inner` (module doc). `hot_rps`: requests/s of one tenant at this process
    from which it is hot (it cools below half of it); `slice_s`: a slice's life, seconds;
    `max_share`: the largest share of a limit one slice holds. Raises what `inner` raises
    (StoreUnavailable) when it has to ask it."""

    def __init__(self, inner: QuotaStore, hot_rps: float, slice_s: float, max_share: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._inner = inner
        self._hot_rps = hot_rps
        self._slice_s = slice_s
        self._max_share = max_share
        self._clock = clock
        self._tenants: dict[str, _Tenant] = {}
        # Request lease id -> (when, what each of its checks was served from).
        self._served: dict[str, tuple[float, dict[str, tuple[_Slice, str]]]] = {}
        self._replica = secrets.token_hex(4)

    async def admit(self, checks: list[LimitCheck], lease_id: str, lease_ms: int, charge: bool = True
                    ) -> tuple[bool, list[LimitState]]:
        """As QuotaStore.admit; a hot tenant's request is answered from its slices (leasing
        the ones it lacks in one call of `inner`) unless its limit is near."""
        if not charge or not checks or self._hot_rps <= 0:
            return await self._inner.admit(checks, lease_id, lease_ms, charge)
        now = self._clock()
        tenant_id = tenant_of(checks[0].key)
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = self._tenants[tenant_id] = _Tenant()
        rate = tenant.meter.arrive(now)
        self._heat(tenant_id, tenant, rate)
        if not tenant.hot:
            return await self._inner.admit(checks, lease_id, lease_ms, charge)
        refused = self._still_refused(tenant, checks, now)
        if refused is not None:
            metrics.QUOTA_SLICE_DECISIONS.labels("refused").inc()
            return False, refused
        if now < tenant.exact_until_s:
            return await self._exact(tenant, checks, lease_id, lease_ms, now)
        if not all(self._covering(tenant, c, now) for c in checks):
            async with tenant.lock:  # one refill at a time per tenant (single-flight)
                now = self._clock()
                missing = [c for c in checks if self._covering(tenant, c, now) is None]
                if missing and not await self._refill(tenant, missing, rate, lease_ms, now):
                    # Near the limit: hand back what this process holds, decide exactly.
                    tenant.exact_until_s = now + self._slice_s
                    await self._return_all(tenant)
                    return await self._exact(tenant, checks, lease_id, lease_ms, now)
        served: dict[str, tuple[_Slice, str]] = {}
        states = []
        for check in checks:
            piece = self._covering(tenant, check, now)
            if piece is None:  # a concurrent request took the last of it: ask exactly
                self._give_back(tenant, served, checks)
                return await self._exact(tenant, checks, lease_id, lease_ms, now)
            member = ""
            if check.kind == "streams":
                member = piece.free.pop()
                tenant.open_streams += 1
            else:
                piece.available -= check.cost
            served[check.key] = (piece, member)
            states.append(replace(piece.state(), slot=member))
        self._served[lease_id] = (now, served)
        metrics.QUOTA_SLICE_DECISIONS.labels("local").inc()
        return True, states

    async def settle(self, checks: list[LimitCheck], lease_id: str, deltas: list[int],
                     slots: Mapping[str, str] | None = None) -> None:
        """As QuotaStore.settle; what a slice served settles into the slice while it lives
        (a stream's slot back to it, tokens and spend moved by the delta), else to `inner`.
        A request admitted by another replica's slice (a mesh whose calls are balanced
        per request) settles on the shared store, freeing the slot it names in `slots`."""
        entry = self._served.pop(lease_id, None)
        if entry is None:
            await self._inner.settle(checks, lease_id, deltas, slots)
            return
        served = entry[1]
        rest: list[tuple[LimitCheck, str, int]] = []
        freed: list[tuple[LimitCheck, str]] = []
        now = self._clock()
        for check, delta in zip(checks, deltas, strict=True):
            piece, member = served.get(check.key, (None, ""))
            if piece is None:
                rest.append((check, lease_id, delta))
            elif check.kind == "streams":
                tenant = self._tenants.get(tenant_of(check.key))
                if tenant is not None:
                    tenant.open_streams = max(tenant.open_streams - 1, 0)
                if not piece.returned and now < piece.expires_s:
                    piece.free.append(member)
                else:
                    freed.append((check, member))
            elif not piece.returned and now < piece.expires_s:
                piece.available -= delta
            elif delta:
                rest.append((check, piece.lease_id, delta))
        await asyncio.gather(*(self._inner.settle([c], lease, [d]) for c, lease, d in rest),
                             *(self._inner.release(c, [m]) for c, m in freed))

    async def run(self) -> None:
        """Returns expired slices' unused units, and cools tenants that went quiet, every
        half slice life, until cancelled (Runtime.in_background)."""
        while True:
            await asyncio.sleep(self._slice_s / 2)
            await self.sweep()

    async def release(self, check: LimitCheck, members: list[str]) -> None:
        """As QuotaStore.release: on `inner`."""
        await self._inner.release(check, members)

    async def sweep(self) -> None:
        """One pass of `run`: expired slices go back, quiet tenants cool, and requests
        never settled (their gateway died) are forgotten after the stream lease."""
        now = self._clock()
        for tenant_id, tenant in list(self._tenants.items()):
            self._heat(tenant_id, tenant, tenant.meter.rate(now))
            expired = [s for s in tenant.slices.values() if not tenant.hot or now >= s.expires_s]
            for piece in expired:
                tenant.slices.pop(piece.check.key, None)
            await self._return(expired)
            if not tenant.hot and not tenant.slices and tenant.meter.rate(now) == 0:
                del self._tenants[tenant_id]
        forget = [lease for lease, (when, _) in self._served.items() if now - when > 3600]
        for lease in forget:
            del self._served[lease]

    async def _exact(self, tenant: _Tenant, checks: list[LimitCheck], lease_id: str, lease_ms: int,
                     now: float) -> tuple[bool, list[LimitState]]:
        """The shared store's own answer for this request. A refusal is remembered until
        its retry-after, so a hot tenant over its limit is refused here, not at the store,
        by every request of that burst (the store said nothing of that cost fits sooner)."""
        metrics.QUOTA_SLICE_DECISIONS.labels("exact").inc()
        allowed, states = await self._inner.admit(checks, lease_id, lease_ms, True)
        if not allowed:
            waits = [s.retry_after_ms for s in states if s.retry_after_ms > 0]
            if waits and not any(s.retry_after_ms < 0 for s in states):
                tenant.refusal = (now + min(waits) / 1000, {c.key: (c.cost, s) for c, s in zip(checks, states,
                                                                                               strict=True)})
        return allowed, states

    @staticmethod
    def _still_refused(tenant: _Tenant, checks: list[LimitCheck], now: float) -> list[LimitState] | None:
        """The remembered refusal's states when it still holds for `checks`: same limits,
        before its retry-after, and no check cheaper than the refused one (a smaller request
        may fit sooner: it is asked)."""
        if tenant.refusal is None:
            return None
        until, by_key = tenant.refusal
        if now >= until:
            tenant.refusal = None
            return None
        states = []
        for check in checks:
            seen = by_key.get(check.key)
            if seen is None or check.cost < seen[0]:
                return None
            state = seen[1]
            left = max(int((until - now) * 1000), 1) if state.retry_after_ms > 0 else 0
            states.append(LimitState(state.remaining, state.reset_ms, left))
        return states if any(s.retry_after_ms for s in states) else None

    def _heat(self, tenant_id: str, tenant: _Tenant, rate: float) -> None:
        if not tenant.hot and rate >= self._hot_rps:
            tenant.hot = True
            metrics.QUOTA_HOT_TENANTS.inc()
            log.info("tenant %s is hot at this process (%.0f requests/s): its limits are served from slices",
                     tenant_id, rate)
        elif tenant.hot and rate < self._hot_rps / 2:
            tenant.hot = False
            metrics.QUOTA_HOT_TENANTS.dec()
            log.info("tenant %s cooled down (%.0f requests/s): its slices go back", tenant_id, rate)

    @staticmethod
    def _covering(tenant: _Tenant, check: LimitCheck, now: float) -> _Slice | None:
        piece = tenant.slices.get(check.key)
        return piece if piece is not None and piece.covers(check, now) else None

    def _size(self, check: LimitCheck, rate: float, open_streams: int) -> int:
        """Units to lease for `check`: `slice_s` of this process's traffic at `rate`, at this
        request's cost each (stream slots: half as many again as this process has open, at
        least 4: concurrency is rate x duration, not rate x slice_s), within `max_share` of
        the limit, never less than one request's."""
        if check.kind == "streams":
            wanted = max(4, math.ceil(open_streams * 1.5))
        else:
            wanted = math.ceil(rate * self._slice_s) * check.cost
        cap = math.floor(check.limit * self._max_share)
        return max(check.cost, min(wanted, cap))

    async def _refill(self, tenant: _Tenant, missing: list[LimitCheck], rate: float, lease_ms: int,
                      now: float) -> bool:
        """Leases a slice for each of `missing` in one call; False when the shared store
        refuses (the limit is near). Slices it replaces go back."""
        lease = f"slice:{self._replica}:{secrets.token_hex(4)}"
        bulk = [replace(c, cost=self._size(c, rate, tenant.open_streams)) for c in missing]
        allowed, states = await self._inner.admit(bulk, lease, lease_ms, True)
        if not allowed:
            return False
        metrics.QUOTA_SLICE_DECISIONS.labels("refill").inc()
        stale = []
        for check, state in zip(bulk, states, strict=True):
            piece = _Slice(check, lease, now + self._slice_s, remaining=state.remaining, reset_ms=state.reset_ms)
            if check.kind == "streams":
                piece.free = stream_members(lease, check.cost)
            else:
                piece.available = check.cost
            old = tenant.slices.get(check.key)
            if old is not None:
                stale.append(old)
            tenant.slices[check.key] = piece
        await self._return(stale)
        return True

    async def _return_all(self, tenant: _Tenant) -> None:
        pieces = list(tenant.slices.values())
        tenant.slices.clear()
        await self._return(pieces)

    async def _return(self, pieces: list[_Slice]) -> None:
        """Hands back what `pieces` hold: the unused rest of a rate or budget (or the
        overrun, charged), and free stream slots; slots in use go back when their request
        settles. A failure leaves the units to expire with the bucket (logged)."""
        calls = []
        for piece in pieces:
            piece.returned = True
            if piece.check.kind == "streams":
                if piece.free:
                    calls.append(self._inner.release(piece.check, piece.free))
                piece.free = []
            elif piece.available:
                calls.append(self._inner.settle([piece.check], piece.lease_id, [-piece.available]))
                piece.available = 0
        if not calls:
            return
        metrics.QUOTA_SLICES_RETURNED.inc(len(pieces))
        for outcome in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(outcome, BaseException):
                log.warning("returning a quota slice failed, its units lapse with the bucket: %s", outcome)

    def _give_back(self, tenant: _Tenant, served: dict[str, tuple[_Slice, str]], checks: list[LimitCheck]
                   ) -> None:
        """Undoes a partial local take (another request emptied a slice meanwhile)."""
        by_key = {c.key: c for c in checks}
        for key, (piece, member) in served.items():
            if member:
                piece.free.append(member)
                tenant.open_streams -= 1
            else:
                piece.available += by_key[key].cost
