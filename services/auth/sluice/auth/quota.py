"""Admission against a principal's limits, and settling it afterwards.

Which limits apply comes from the tenant's tier with the tenant's overrides
(config), for two scopes: the tenant as a whole and each of its keys. Tokens
are reserved from an estimate (prompt estimate + max_tokens, as the Messages
API itself estimates output), spend from the same tokens at the requested
model's prices, and both are corrected by Settle with the real usage.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sluice.auth.quota_store import LimitCheck, LimitState, LocalQuotaStore, QuotaStore
from sluice.auth.v1 import auth_service_pb2 as pb
from sluice.auth.v1 import principal_pb2
from sluice.catalog.catalog import Catalog, Prices
from sluice.catalog.pricing import cost_micro_usd
from sluice.config.tenants import Limits, ScopeLimits
from sluice.llm.v1 import messages_pb2
from sluice.rpc import headers
from sluice.rpc.errors import QuotaViolation, Reason, SluiceError
from sluice.storage.redis import StoreUnavailable
from sluice.telemetry import metrics

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
HEADER = headers.RATE_LIMIT_PREFIX
# What "the store is down" looks like: what its adapter says (refused or
# dropped connections), and answers slower than the quota timeout.
STORE_ERRORS = (StoreUnavailable, TimeoutError)


@dataclass(frozen=True)
class _Named:
    check: LimitCheck
    # "requests", "tokens", "streams", "daily_spend", "monthly_spend"
    name: str
    # "tenant:<id>" or "key:<id>"
    subject: str


def usage_tokens(usage: messages_pb2.Usage) -> int:
    return (usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
            + usage.output_tokens)


class StoreHealth:
    """Whether to ask the shared store at all. After a failure requests go
    straight to their tier's store-down policy for `retry_s`, then the next
    one tries Redis again, so an outage costs no timeouts on every request
    and recovery needs no restart."""

    def __init__(self, retry_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._retry_s = retry_s
        self._clock = clock
        self._down_until: float | None = None
        metrics.QUOTA_STORE_UP.set(1)

    def worth_trying(self) -> bool:
        return self._down_until is None or self._clock() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        if self._down_until is None:
            log.warning("quota store unreachable (%s): tiers now run on their store-down policy; retrying every "
                        "%.1fs", type(exc).__name__, self._retry_s)
        self._down_until = self._clock() + self._retry_s
        metrics.QUOTA_STORE_UP.set(0)

    def succeeded(self) -> None:
        if self._down_until is not None:
            log.warning("quota store reachable again: shared limits back in force")
            self._down_until = None
            metrics.QUOTA_STORE_UP.set(1)


class QuotaKeeper:
    def __init__(self, store: QuotaStore, limits_for: Callable[[str], ScopeLimits | None], catalog: Catalog,
                 lease_s: float, *, fallback: LocalQuotaStore | None = None, timeout_s: float = 0.5,
                 health: StoreHealth | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._limits_for = limits_for
        self._catalog = catalog
        self._lease_ms = int(lease_s * 1000)
        # The local limiter of fail-open tiers; None when `store` is already local.
        self._fallback = fallback
        self._timeout_s = timeout_s
        self._health = health or StoreHealth(retry_s=1.0)
        self._clock = clock
        # Unknown or unnamed models are priced as the dearest in the catalog:
        # an estimate may be high, never low.
        self._dearest = max((e.prices for e in catalog.models),
                            key=lambda p: p.input + p.output + p.cache_write_1h)

    def _prices(self, model: str) -> Prices:
        entry = self._catalog.lookup(model) if model else None
        return entry.prices if entry else self._dearest

    async def admit(self, request: pb.AdmitRequest) -> pb.AdmitResponse:
        """Admits one request against every limit of its tenant and key, or
        refuses it. Reserves a request, a stream slot, tokens (the estimated
        input plus max_output_tokens, as the API estimates output) and spend
        (those tokens at the model's prices, integer micro-USD) under a lease
        of `lease_s` seconds; `requests_only` (count_tokens) charges the
        request rate alone and reserves nothing. Returns the reservation to
        settle and the Anthropic rate-limit headers
        (`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`).
        Raises SluiceError RATE_LIMITED (429, retry-after in seconds, a
        QuotaViolation per limit exceeded), or DEPENDENCY_UNAVAILABLE (503)
        while the shared store is down and the tier fails closed (a tier that
        fails open is decided by this replica's local limiter)."""
        now = self._clock()
        if request.requests_only:
            # count_tokens: a request against the request rate, nothing else.
            probe = pb.Reservation(lease_id=secrets.token_hex(8), day=now.strftime("%Y%m%d"),
                                   month=now.strftime("%Y%m"))
            reported = await self._decide(request.principal, probe, now, charge=True, only=("requests",))
            return pb.AdmitResponse(rate_limit_headers=reported)
        estimate = messages_pb2.Usage(input_tokens=request.estimated_input_tokens,
                                      output_tokens=request.max_output_tokens)
        reservation = pb.Reservation(
            lease_id=secrets.token_hex(8), tokens=usage_tokens(estimate),
            spend_micro_usd=cost_micro_usd(estimate, self._prices(request.model)),
            day=now.strftime("%Y%m%d"), month=now.strftime("%Y%m"),
        )
        reported = await self._decide(request.principal, reservation, now, charge=True)
        return pb.AdmitResponse(reservation=reservation, rate_limit_headers=reported)

    async def peek(self, principal: principal_pb2.Principal) -> dict[str, str]:
        """Whether a request of this principal would be admitted now, charging
        nothing: its rate-limit headers, or the RATE_LIMITED error admit would
        raise. Tokens and spend are looked at with a cost of 0 (is the bucket
        or budget already spent?), since a peek comes before the body is read."""
        now = self._clock()
        probe = pb.Reservation(day=now.strftime("%Y%m%d"), month=now.strftime("%Y%m"))
        return await self._decide(principal, probe, now, charge=False)

    async def _decide(self, principal: principal_pb2.Principal, reservation: pb.Reservation, now: datetime,
                      charge: bool, only: tuple[str, ...] = ()) -> dict[str, str]:
        limits = self._limits_for(principal.tenant_id)
        named = _checks(limits, principal, reservation, now)
        if only:
            named = [n for n in named if n.name in only]
        if limits is None or not named:
            return {}
        checks = [n.check for n in named]
        outcome = await self._shared_admit(checks, reservation.lease_id, charge)
        if outcome is None:
            outcome = await self._store_down_admit(limits.when_store_down, checks, reservation.lease_id, charge)
            reservation.local = True
        allowed, states = outcome
        reported = rate_limit_headers(named, states, now)
        if allowed:
            for check, state in zip(checks, states, strict=True):
                if state.slot:
                    reservation.stream_slots[check.key] = state.slot
            return reported
        raise _rejection(named, states, reported, count=charge)

    async def _shared_admit(self, checks: list[LimitCheck], lease_id: str, charge: bool
                            ) -> tuple[bool, list[LimitState]] | None:
        """The shared store's verdict, or None when it cannot give one."""
        if not self._health.worth_trying():
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                outcome = await self._store.admit(checks, lease_id, self._lease_ms, charge)
        except STORE_ERRORS as exc:
            self._health.failed(exc)
            return None
        self._health.succeeded()
        return outcome

    async def _store_down_admit(self, policy: str, checks: list[LimitCheck], lease_id: str, charge: bool
                                ) -> tuple[bool, list[LimitState]]:
        if policy == "fail_closed" or self._fallback is None:
            metrics.QUOTA_STORE_DOWN_DECISIONS.labels("fail_closed", "refused").inc()
            raise SluiceError(Reason.DEPENDENCY_UNAVAILABLE,
                              "quota store unavailable and this tier fails closed; retry shortly")
        allowed, states = await self._fallback.admit(checks, lease_id, self._lease_ms, charge)
        metrics.QUOTA_STORE_DOWN_DECISIONS.labels("fail_open", "admitted" if allowed else "rate_limited").inc()
        return allowed, states

    async def settle(self, request: pb.SettleRequest) -> None:
        """Corrects a reservation with what the request used (its usage
        from the upstream, at the served model's prices): tokens and spend
        move by the difference, up or down; the request and its stream slot
        stay counted (the slot is released). A reservation made by the local
        limiter (store down) settles there. Raises the store's errors; the
        caller logs them and the lease expires on its own."""
        reserved = request.reservation
        used = pb.Reservation(tokens=usage_tokens(request.usage),
                              spend_micro_usd=cost_micro_usd(request.usage, self._prices(request.model)),
                              day=reserved.day, month=reserved.month)
        now = self._clock()
        limits = self._limits_for(request.principal.tenant_id)
        # The same limits costed twice; requests and stream slots cost the
        # same either way, so only tokens and spend move.
        charged = _checks(limits, request.principal, reserved, now)
        owed = _checks(limits, request.principal, used, now)
        if not charged:
            return
        deltas = [o.check.cost - c.check.cost for c, o in zip(charged, owed, strict=True)]
        if reserved.local and self._fallback is not None:
            await self._fallback.settle([c.check for c in charged], reserved.lease_id, deltas)
            return
        try:
            await self._store.settle([c.check for c in charged], reserved.lease_id, deltas,
                                     dict(reserved.stream_slots))
        except STORE_ERRORS as exc:
            # The reservation stands until it expires: a rate refills, a
            # lease lapses, a spend estimate stays charged to its period.
            self._health.failed(exc)
            raise SluiceError(Reason.DEPENDENCY_UNAVAILABLE,
                              f"quota store unavailable, reservation left to expire: {type(exc).__name__}") from None


def _checks(limits: ScopeLimits | None, principal: principal_pb2.Principal, reservation: pb.Reservation,
            now: datetime) -> list[_Named]:
    if limits is None:
        return []
    out: list[_Named] = []
    tag = f"sluice:q:{{{principal.tenant_id}}}"
    for scope, scope_limits, prefix in (
        (f"tenant:{principal.tenant_id}", limits.tenant, f"{tag}:t"),
        (f"key:{principal.key_id}", limits.key, f"{tag}:k:{principal.key_id}"),
    ):
        out += _scope_checks(scope, scope_limits, prefix, reservation, now)
    return out


def _scope_checks(subject: str, limits: Limits, prefix: str, reservation: pb.Reservation, now: datetime
                  ) -> list[_Named]:
    out = []
    if limits.requests_per_minute:
        out.append(_Named(LimitCheck("rate", f"{prefix}:rpm", limits.requests_per_minute, MINUTE_MS, 1),
                          "requests", subject))
    if limits.tokens_per_minute:
        out.append(_Named(LimitCheck("rate", f"{prefix}:tpm", limits.tokens_per_minute, MINUTE_MS,
                                     reservation.tokens), "tokens", subject))
    if limits.concurrent_streams:
        out.append(_Named(LimitCheck("streams", f"{prefix}:streams", limits.concurrent_streams, 0, 1),
                          "streams", subject))
    day_end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    month_end = (datetime(now.year, now.month, 1, tzinfo=UTC) + timedelta(days=32)).replace(day=1)
    for name, usd, period, end in (("daily_spend", limits.daily_spend_usd, reservation.day, day_end),
                                   ("monthly_spend", limits.monthly_spend_usd, reservation.month, month_end)):
        if usd:
            ms_left = max(int((end - now).total_seconds() * 1000), 1)
            out.append(_Named(LimitCheck("budget", f"{prefix}:usd:{period}", int(usd * 1_000_000), ms_left,
                                         reservation.spend_micro_usd), name, subject))
    return out


def rate_limit_headers(named: list[_Named], states: list[LimitState], now: datetime) -> dict[str, str]:
    """Anthropic's response headers for requests and tokens: of the key and
    tenant limits, the one with the least left is the one reported."""
    out: dict[str, str] = {}
    for name in ("requests", "tokens"):
        pairs = [(n, s) for n, s in zip(named, states, strict=True) if n.name == name]
        if not pairs:
            continue
        n, s = min(pairs, key=lambda p: p[1].remaining)
        reset = now + timedelta(milliseconds=max(s.reset_ms, 0))
        out[f"{HEADER}{name}-limit"] = str(n.check.limit)
        out[f"{HEADER}{name}-remaining"] = str(max(s.remaining, 0))
        out[f"{HEADER}{name}-reset"] = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


_DESCRIBE = {
    "requests": "requests per minute", "tokens": "tokens per minute", "streams": "concurrent streams",
    "daily_spend": "daily spend (micro-USD)", "monthly_spend": "monthly spend (micro-USD)",
}


def _rejection(named: list[_Named], states: list[LimitState], reported: dict[str, str], count: bool = True
               ) -> SluiceError:
    violations, waits, hopeless = [], [], False
    for n, s in zip(named, states, strict=True):
        if s.retry_after_ms == 0:
            continue
        if count:
            metrics.QUOTA_REJECTIONS.labels(n.name, n.subject.split(":", 1)[0]).inc()
        what = _DESCRIBE[n.name]
        if s.retry_after_ms < 0:
            hopeless = True
            violations.append(QuotaViolation(
                n.subject, f"{what}: this request needs {n.check.cost}, more than the limit of {n.check.limit}"))
        else:
            waits.append(s.retry_after_ms)
            violations.append(QuotaViolation(n.subject, f"{what}: limit {n.check.limit} reached"))
    message = "; ".join(f"{v.subject} {v.description}" for v in violations)
    if hopeless:
        # No wait admits it: answered so that SDKs do not retry (no
        # retry-after; x-should-retry: false on HTTP).
        return SluiceError(Reason.LIMIT_EXCEEDED_BY_REQUEST, f"request exceeds a limit outright: {message}; "
                           "retrying will not help (reduce max_tokens or the prompt, or ask for a higher limit)",
                           quota_violations=violations, metadata=reported)
    # A store answering "refused" with every wait at 0 (it should not) still
    # gets a retryable answer with a short wait, not an internal error.
    return SluiceError(Reason.RATE_LIMITED, f"rate limit exceeded: {message or 'limit reached'}",
                       quota_violations=violations, retry_after_s=max(waits, default=1) / 1000, metadata=reported)
