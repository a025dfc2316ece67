"""Calls upstream deployments: residency, breakers, admission, retries,
fallback, hedging, and the one answer that reaches the client.

A request comes with its ordered candidates (model + deployment, all
allowed in the tenant's home region) and the geographies it may run in.
Inference never calls anything else: a candidate outside those geographies
is refused (and counted), and retries, fallbacks and hedges only walk the
list. For each candidate, in order:

- its deployment's **circuit breaker** must allow a call (an open breaker
  skips the candidate; half-open lets a probe through; when every
  candidate's breaker is open, one attempt is made anyway, Envoy's "panic"
  rule, since a request tried beats one refused);
- its **adaptive concurrency limit** must admit the request's shedding
  class (`priority`, 0 = enterprise .. 3 = background): lower classes are
  refused first as the limit shrinks under overload;
- extra attempts (a retry on the same deployment, or a fallback after a
  failure) need the **retry budget**; a retry waits an exponential backoff
  with full jitter, at least the upstream's `retry-after`, never past the
  deadline, and none follows `x-should-retry: false`;
- when the first token is later than the deployment's observed high
  percentile, a **hedge** starts on the next candidate (hedge budget
  allowing); the first attempt to produce a token wins, the other is
  cancelled and reported so its cost is recorded as overhead.

Nothing reaches the client before the first token (the events before it,
message_start and content_block_start, are held), so every failure before
it can still be retried, fallen back from or hedged. After it the response
is committed: a later failure ends the stream with that error, unless the
tenant opted in to continuing a text-only answer on the next candidate
(the partial text as an assistant prefill; never with a tool call or
thinking in flight, never on a model that refuses prefill).

`generate` yields the answer's events and `AttemptReport`s: the serving
attempt just before its first event, the others as they end. Sources:
Finagle's RetryBudget and Envoy's retry budgets; "Exponential Backoff and
Jitter" (AWS Architecture Blog, 2015); "The Tail at Scale" (Dean and
Barroso, CACM 2013) for hedged requests; Netflix concurrency-limits (AIMD,
partitioned limits) for admission.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from sluice import call_context
from sluice.config.inference import ResilienceSettings
from sluice.llm.v1 import wire_pb2
from sluice.resilience.breaker import CircuitBreaker
from sluice.resilience.budget import RetryBudget
from sluice.resilience.classes import CLASSES
from sluice.resilience.latency import HedgePolicy, LatencyTracker
from sluice.resilience.limiter import AIMDLimit, FixedLimit, PartitionedLimiter, Permit
from sluice.routing.v1 import candidate_pb2
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.fleet import FleetStore
from sluice.telemetry import metrics, tracing
from sluice.wire import events as ev
from sluice.wire import jsontext
from sluice.wire.events import Event
from sluice.wire.request import tokens_for_chars

log = logging.getLogger(__name__)

RETRYABLE = frozenset(
    {Reason.UPSTREAM_OVERLOADED, Reason.UPSTREAM_RATE_LIMITED, Reason.UPSTREAM_ERROR, Reason.UPSTREAM_UNAVAILABLE,
     Reason.DEADLINE_EXCEEDED}
)
# Failures that say this deployment cannot serve the model (not enabled in
# its project or region): fall back, never retry there.
_NOT_HERE = frozenset({Reason.UPSTREAM_NOT_FOUND})
# The request refused as such; from a fallback model, only by that model.
_REFUSED = frozenset({Reason.UPSTREAM_REJECTED, Reason.UPSTREAM_TOO_LARGE})
# Failures that say the deployment is saturated: they shrink its concurrency limit.
_OVERLOAD = frozenset({Reason.UPSTREAM_OVERLOADED, Reason.UPSTREAM_RATE_LIMITED, Reason.DEADLINE_EXCEEDED})
# An answer's output rate is shared only when it is this long: a rate
# measured over a handful of tokens is mostly timer noise.
_RATE_MIN_TOKENS = 32
# Events an attempt may send before its first token; held until it wins.
_BEFORE_TOKEN = frozenset({ev.MESSAGE_START, ev.CONTENT_BLOCK_START, ev.PING})
NO_RETRY = "upstream_no_retry"
# After the hold ends with nothing held yet, how often to look again.
_HOLD_POLL_S = 0.05
_NEVER = float("inf")
_BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class Upstream(Protocol):
    """One deployment's adapter. Raises SluiceError with an UPSTREAM_* reason."""

    can_count_tokens: bool

    def stream(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
               timeout: float | None) -> AsyncIterator[Event]: ...

    async def count_tokens(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
                           timeout: float | None) -> tuple[int, bytes]: ...


@dataclass(slots=True)
class AttemptReport:
    """One call to one candidate (inference_service.proto's Attempt)."""

    candidate: int
    deployment: str
    model_id: str
    outcome: str  # served | failed | cancelled | continued
    reason: str = ""
    hedge: bool = False
    usage: bytes = b""
    ttft_ms: float = 0.0


@dataclass(slots=True)
class UpstreamTiming:
    """The end of a served stream: how long the request waited on upstream
    models (inference_service.proto's Timing)."""

    upstream_ms: float


def waited_ms(spans: Iterable[tuple[float, float]]) -> float:
    """Milliseconds covered by (start, end) intervals in seconds, overlaps
    counted once (a hedge racing its primary is one wait, not two)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total * 1000


class DeploymentHealth:
    """One deployment's breaker, concurrency limit and latency history, as
    this process sees them; with a `fleet` store, shared with the region's
    routers (time to first token, output rate, the breaker opening and
    closing)."""

    __slots__ = ("deployment", "breaker", "limiter", "latency", "fleet")

    def __init__(self, deployment: str, policy: ResilienceSettings, max_concurrency: int,
                 clock: Callable[[], float], fleet: FleetStore | None = None) -> None:
        self.deployment = deployment
        self.fleet = fleet
        self.breaker = CircuitBreaker(
            consecutive_failures=policy.breaker_consecutive_failures, error_rate=policy.breaker_error_rate,
            window_s=policy.breaker_window_seconds, min_requests=policy.breaker_min_requests,
            open_s=policy.breaker_open_seconds, max_open_s=policy.breaker_max_open_seconds, clock=clock,
            on_change=self._changed)
        initial = min(policy.initial_concurrency, max_concurrency) if policy.adaptive_concurrency \
            else max_concurrency
        self.limiter = PartitionedLimiter(
            AIMDLimit(initial=initial, min_limit=1, max_limit=max_concurrency) if policy.adaptive_concurrency
            else FixedLimit(max_concurrency), policy.concurrency_shares)
        self.latency = LatencyTracker()
        metrics.BREAKER_STATE.labels(deployment).set(0)
        metrics.CONCURRENCY_LIMIT.labels(deployment).set(self.limiter.limit)

    def _changed(self, old: str, new: str) -> None:
        log.warning("deployment %s circuit breaker %s -> %s", self.deployment, old, new)
        metrics.BREAKER_STATE.labels(self.deployment).set(_BREAKER_VALUE.get(new, 0))
        metrics.BREAKER_TRANSITIONS.labels(self.deployment, new).inc()
        if self.fleet is not None and new in ("open", "closed"):
            self.fleet.breaker(self.deployment, time.time() + self.breaker.retry_in() if new == "open" else None)


class Generator:
    """The resilience policies over a set of deployments (see module doc).

    `upstreams` by deployment id; `max_concurrency` per deployment id (the
    ceiling of its adaptive limit); `clock` is monotonic seconds and
    `rng` draws backoff jitter (tests fix both); `fleet` shares latency
    and breaker state with the region's routers."""

    def __init__(self, upstreams: dict[str, Upstream], policy: ResilienceSettings,
                 max_concurrency: dict[str, int] | None = None, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, fleet: FleetStore | None = None) -> None:
        self.upstreams = upstreams
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self.health = {dep: DeploymentHealth(dep, policy, (max_concurrency or {}).get(dep, 256), clock, fleet)
                       for dep in upstreams}
        # Budgets per shedding class: background work that drains its own
        # cannot take an enterprise request's retry.
        self.retry_budgets = {cls: RetryBudget(policy.retry_budget_ratio, policy.retry_budget_min_per_second,
                                               policy.budget_window_seconds, clock=clock) for cls in CLASSES}
        self.hedge_budgets = {cls: RetryBudget(policy.hedge_budget_ratio, policy.hedge_budget_min_per_second,
                                               policy.budget_window_seconds, clock=clock) for cls in CLASSES}
        self._hedge = HedgePolicy(policy.hedge_percentile, policy.hedge_min_delay_seconds, policy.hedge_delay_seconds)

    # -- Generate -----------------------------------------------------------------------

    async def generate(self, request: wire_pb2.WireRequest, candidates: list[candidate_pb2.Candidate],
                       allowed_geos: Iterable[str] = (), priority: int = 1, continue_midstream: bool = False,
                       buffered: bool = False) -> AsyncIterator[Event | AttemptReport | UpstreamTiming]:
        """The answer's events and the attempts' reports (module doc).
        Raises SluiceError: the last attempt's failure when every allowed
        attempt failed before its first token; NO_UPSTREAM when no candidate
        may be called; UPSTREAM_OVERLOADED (529, retry-after) when every
        deployment's limit refuses the request's class; after the first
        token, the failure that ended the stream."""
        walk = _Walk(self, candidates, allowed_geos, priority, buffered=buffered)
        walk.retry_budget.deposit()
        walk.hedge_budget.deposit()
        reports: list[AttemptReport] = []
        try:
            try:
                winner = await walk.first_token(request, reports)
            except SluiceError:
                for report in walk.skipped + reports:  # the failed attempts still go on the record
                    yield report
                raise
            for report in walk.skipped + reports:
                yield report
            async for item in self._deliver(walk, winner, request, continue_midstream):
                yield item
            now = self._clock()
            yield UpstreamTiming(waited_ms((a.sent, a.ended or now) for a in walk.started))
        finally:
            # However the request ends (the client gone at any yield above),
            # no attempt keeps its permit, breaker slot or connection.
            for attempt in walk.started:
                if not attempt.done:
                    await attempt.cancel()

    async def _deliver(self, walk: _Walk, attempt: _Attempt, request: wire_pb2.WireRequest,
                       continue_midstream: bool) -> AsyncIterator[Event | AttemptReport]:
        """The winning attempt's events from its first token to its end;
        with `continue_midstream`, a text-only answer that fails on the way
        continues on the next candidate that takes a prefill."""
        yield attempt.report("served")
        text = _TextSoFar() if continue_midstream else None
        if attempt.pending is not None:
            # Committed before its first token: what it holds goes now, the
            # rest when the token comes (a failure now ends the stream).
            for event in attempt.held[:]:
                if text is not None:
                    text.observe(event)
                yield event
            sent = len(attempt.held)
            try:
                await attempt.pending
            except BaseException as exc:
                attempt.pending = None
                attempt.finish(exc if isinstance(exc, SluiceError) else None,
                               cancelled=not isinstance(exc, SluiceError))
                await attempt.close()
                raise
            attempt.pending = None
            del attempt.held[:sent]
        for event in attempt.held + attempt.delivered_first:
            if text is not None:
                text.observe(event)
            yield event
        attempt.held.clear()
        while True:
            current, nxt = attempt, None
            try:
                async for event in current.rest():
                    if text is not None:
                        text.observe(event)
                    yield event
                current.finish(None)
                return
            except SluiceError as err:
                current.finish(err)
                tried: list[AttemptReport] = []
                if text is not None and text.continuable() and err.reason in RETRYABLE:
                    nxt = await walk.continuation(request, text, current, tried)
                for report in tried:
                    yield report
                if nxt is None:
                    raise
                assert text is not None  # a continuation is only found for a text being followed
                # The text the client received from this attempt: the
                # continuation's message_delta counts it (see renumber).
                current.usage = {**current.usage, "output_tokens": text.delivered_tokens}
                yield current.report("continued", err.reason.value)
            except BaseException:
                current.finish(None, cancelled=True)
                raise
            finally:
                await current.close()
            yield nxt.report("served")
            for event in text.spliced(nxt.held + nxt.delivered_first):
                yield event
            nxt.held.clear()
            nxt.delivered_first = []
            nxt.splice = text
            attempt = nxt

    # -- CountTokens --------------------------------------------------------------------

    async def count_tokens(self, request: wire_pb2.WireRequest, candidates: list[candidate_pb2.Candidate],
                           allowed_geos: Iterable[str] = ()) -> tuple[int, bytes, str]:
        """(input_tokens, the answer's JSON, the catalog id that answered)
        from the first candidate whose provider can count, walking them as
        Generate does (breakers, retries, budget; no hedging)."""
        walk = _Walk(self, [c for c in candidates if getattr(self.upstreams.get(c.deployment), "can_count_tokens",
                                                             False)], allowed_geos, 0)
        walk.retry_budget.deposit()
        async for candidate, upstream, health in walk.calls():
            started = self._clock()
            try:
                tokens, body = await upstream.count_tokens(candidate, request, _remaining())
            except SluiceError as err:
                walk.failed(candidate, health, err, self._clock() - started)
                continue
            health.breaker.record_success()
            _count(candidate, "served")
            return tokens, body, candidate.model_id
        raise AssertionError("unreachable: a walk raises when every attempt failed")

    def states(self) -> list[tuple[str, str, float, int, int, float]]:
        """(deployment, breaker state, seconds until a probe, limit, in
        flight, observed p95 time to first token) per deployment."""
        return [(dep, h.breaker.state, h.breaker.retry_in(), h.limiter.limit, h.limiter.in_flight,
                 h.latency.percentile(0.95) or 0.0) for dep, h in self.health.items()]

    def backoff(self, attempt: int, last: SluiceError) -> float:
        """Seconds before retry number `attempt` (1-based) on the same
        deployment: full jitter over base·2^(attempt-1) capped at max, and
        never less than the upstream's retry-after."""
        p = self.policy
        delay = self._rng.uniform(0, min(p.backoff_max_seconds, p.backoff_base_seconds * (2 ** (attempt - 1))))
        if last.retry_after_s is not None:
            delay = max(delay, last.retry_after_s)
        return delay

    def hedge_delay(self, candidate: candidate_pb2.Candidate) -> float | None:
        if not self.policy.hedging:
            return None
        health = self.health.get(candidate.deployment)
        return self._hedge.delay(health.latency) if health is not None else None


class _Attempt:
    """One call in flight: the upstream's stream, the events held until its
    first token, its concurrency permit and breaker slot."""

    __slots__ = ("index", "candidate", "health", "permit", "hedge", "stream", "held", "delivered_first",
                 "sent", "ttft", "usage", "done", "_clock", "splice", "pending", "buffered", "output_tokens",
                 "ended", "span")

    def __init__(self, index: int, candidate: candidate_pb2.Candidate, health: DeploymentHealth, permit: Permit,
                 stream: AsyncIterator[Event], hedge: bool, clock: Callable[[], float], buffered: bool = False) -> None:
        self.buffered = buffered
        self.index, self.candidate, self.health, self.permit = index, candidate, health, permit
        self.stream, self.hedge, self._clock = stream, hedge, clock
        self.held: list[Event] = []
        self.delivered_first: list[Event] = []
        self.sent = clock()
        self.ended = 0.0
        self.ttft = 0.0
        self.output_tokens = 0  # as the answer's message_delta reports them
        self.usage: dict = {}
        self.done = False
        self.splice: _TextSoFar | None = None
        # Set when the attempt won before its first token (the hold ran
        # out): the task still reading to it.
        self.pending: asyncio.Task | None = None
        # The upstream call's CLIENT span (GenAI conventions), a child of the
        # Generate call's span, when the trace is sampled; ended in finish.
        self.span = tracing.child(f"chat {candidate.model_id}", tracing.SpanKind.CLIENT, attributes={
            tracing.GEN_AI_OPERATION: "chat", tracing.GEN_AI_SYSTEM: "anthropic",
            tracing.GEN_AI_PROVIDER: _GEN_AI_PROVIDERS.get(candidate.provider, candidate.provider),
            tracing.GEN_AI_REQUEST_MODEL: candidate.model_id, tracing.DEPLOYMENT: candidate.deployment,
            tracing.HEDGE: hedge}) if tracing.ENABLED else None

    async def first_token(self) -> _Attempt:
        """Reads until the first event that is not message_start,
        content_block_start or ping; holds what came before. Raises the
        upstream's SluiceError."""
        # The call's span is current while the request goes out (its
        # traceparent reaches the upstream when propagate_upstream is on).
        token = tracing.attach(self.span) if self.span is not None else None
        try:
            await self._read_to_first_token()
        finally:
            if token is not None:
                tracing.detach(token)
        return self

    async def _read_to_first_token(self) -> None:
        first = None
        async for event in self.stream:
            if event.type == ev.MESSAGE_START:
                message = event.view.get("message")
                if isinstance(message, dict):
                    self.usage = ev.merge_usage({}, message.get("usage"))
            if event.type in _BEFORE_TOKEN:
                self.held.append(event)
                continue
            if self.buffered:  # the whole answer, then it wins
                if event.type == ev.MESSAGE_DELTA:
                    self._note_output(event)
                if first is None:
                    first = self._clock()
                self.held.append(event)
                continue
            self.delivered_first.append(event)
            break
        # (Or an answer with no event after its start: a stream that ended.)
        self.ttft = (first or self._clock()) - self.sent
        self.health.latency.record(self.ttft)
        if self.health.fleet is not None:
            self.health.fleet.observe_ttft(self.candidate.deployment, self.ttft)
        metrics.UPSTREAM_TTFT_SECONDS.labels(self.candidate.deployment, self.candidate.model_id).observe(self.ttft)

    async def rest(self) -> AsyncIterator[Event]:
        splice = self.splice
        async for event in self.stream:
            if event.type == ev.MESSAGE_DELTA:
                self._note_output(event)
            if splice is not None:
                renumbered = splice.renumber(event)
                if renumbered is None:
                    continue
                event = renumbered
            yield event

    def _note_output(self, event: Event) -> None:
        usage = event.view.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
            self.output_tokens = usage["output_tokens"]

    def report(self, outcome: str, reason: str = "") -> AttemptReport:
        """The attempt as inference reports it, counted (a failure by its reason)."""
        _count(self.candidate, reason if outcome == "failed" else outcome)
        usage = jsontext.dumps(self.usage).encode("utf-8") if self.usage else b""
        return AttemptReport(self.index, self.candidate.deployment, self.candidate.model_id, outcome, reason,
                             self.hedge, usage, self.ttft * 1000)

    def finish(self, err: SluiceError | None, cancelled: bool = False) -> None:
        """Settles the breaker and the permit, once."""
        if self.done:
            return
        self.done = True
        self.ended = self._clock()
        rtt = self.ended - self.sent
        if self.span is not None:
            self._end_span(err, cancelled)
        if cancelled:
            self.health.breaker.release()
            self.permit.release("ignore", rtt)
        elif err is None or err.reason not in RETRYABLE | _NOT_HERE:
            if (err is None and self.output_tokens >= _RATE_MIN_TOKENS and self.health.fleet is not None
                    and rtt > self.ttft):
                self.health.fleet.observe_output_rate(self.candidate.deployment,
                                                      self.output_tokens / (rtt - self.ttft))
            # A refusal of the request itself says the deployment works. The
            # round trip the limit learns is the time to the first token:
            # a stream's length is the answer's, not the deployment's.
            self.health.breaker.record_success()
            self.permit.release("success", self.ttft or rtt)
        else:
            self.health.breaker.record_failure()
            self.permit.release("dropped" if err.reason in _OVERLOAD else "ignore", rtt)
        metrics.CONCURRENCY_LIMIT.labels(self.candidate.deployment).set(self.health.limiter.limit)
        metrics.DEPLOYMENT_IN_FLIGHT.labels(self.candidate.deployment).set(self.health.limiter.in_flight)

    def _end_span(self, err: SluiceError | None, cancelled: bool) -> None:
        span = self.span
        assert span is not None  # called only when the attempt has a span
        usage = self.usage
        outcome = "cancelled" if cancelled else ("failed" if err is not None else "served")
        span.set_attributes({tracing.ATTEMPT_OUTCOME: outcome, tracing.GEN_AI_RESPONSE_MODEL: self.candidate.model_id,
                             "sluice.time_to_first_token_ms": self.ttft * 1000})
        for key, name in ((tracing.GEN_AI_INPUT_TOKENS, "input_tokens"),
                          (tracing.GEN_AI_CACHE_READ_TOKENS, "cache_read_input_tokens"),
                          (tracing.GEN_AI_CACHE_WRITE_TOKENS, "cache_creation_input_tokens")):
            if isinstance(usage.get(name), int):
                span.set_attribute(key, usage[name])
        if self.output_tokens:
            span.set_attribute(tracing.GEN_AI_OUTPUT_TOKENS, self.output_tokens)
        if err is not None:
            tracing.fail(span, err.reason.value, err.message)
        span.end()

    async def cancel(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            await _settle(self.pending)
        self.finish(None, cancelled=True)
        await self.close()

    async def close(self) -> None:
        """Closes the upstream stream (its connection), now rather than at GC."""
        with suppress(Exception):
            await self.stream.aclose()  # type: ignore[attr-defined]  # an async generator at run time


class _Walk:
    """One request's way down its candidates."""

    def __init__(self, gen: Generator, candidates: list[candidate_pb2.Candidate], allowed_geos: Iterable[str],
                 priority: int, buffered: bool = False) -> None:
        self._gen = gen
        self._buffered = buffered
        self._priority = max(0, min(3, priority))
        self.retry_budget = gen.retry_budgets[self._priority]
        self.hedge_budget = gen.hedge_budgets[self._priority]
        self.skipped: list[AttemptReport] = []  # candidates passed over without a call, once each
        allowed = set(allowed_geos)
        self._candidates: list[tuple[int, candidate_pb2.Candidate]] = []
        for i, c in enumerate(candidates):
            if allowed and c.geo not in allowed:
                # Routing never lists such a candidate; if one came, it is not called.
                metrics.RESIDENCY_REFUSED.labels(c.deployment).inc()
                log.error("refused candidate %s (%s): geo %r is outside the request's residency %s",
                          c.deployment, c.model_id, c.geo, sorted(allowed))
                continue
            self._candidates.append((i, c))
        self._requested_model = self._candidates[0][1].model_id if self._candidates else ""
        self._next = 0
        self._tries = 0  # attempts made on the current candidate
        self._extra = False  # an attempt was made: the next one needs the retry budget
        self.last: SluiceError | None = None
        self._overloaded: list[float] = []  # retry-after hints from breakers and limits
        self._ejected: tuple[candidate_pb2.Candidate, DeploymentHealth] | None = None  # first open breaker met
        self.started: list[_Attempt] = []  # every attempt made, to settle whatever the ending
        self._panicked = False

    def _fail_all(self) -> SluiceError:
        if self.last is not None:
            return self.last
        if self._overloaded:
            return SluiceError(Reason.UPSTREAM_OVERLOADED, "every deployment that may serve this request is "
                               "overloaded or failing; retry later", retry_after_s=max(1.0, min(self._overloaded)))
        if not self._candidates:
            return SluiceError(Reason.NO_UPSTREAM, "no deployment may serve this request")
        return SluiceError(Reason.NO_UPSTREAM, "no deployment could be called for this request")

    def _admit(self, candidate: candidate_pb2.Candidate) -> tuple[DeploymentHealth, Permit] | None:
        """The deployment's breaker and limit both allow a call, or None."""
        health = self._gen.health.get(candidate.deployment)
        if health is None or candidate.deployment not in self._gen.upstreams:
            self.last = self.last or SluiceError(
                Reason.NO_UPSTREAM, f"deployment {candidate.deployment!r} is not configured in inference")
            return None
        if self._gen.policy.circuit_breakers and not self._panicked and not health.breaker.allow():
            self._overloaded.append(health.breaker.retry_in())
            if self._ejected is None:
                self._ejected = (candidate, health)
            self._skip(candidate, "BREAKER_OPEN")
            return None
        permit = health.limiter.try_acquire(self._priority)
        if permit is None:
            health.breaker.release()
            metrics.SHED.labels("deployment", str(self._priority)).inc()
            self._overloaded.append(1.0)
            self._skip(candidate, "CONCURRENCY_LIMIT")
            return None
        return health, permit

    def _skip(self, candidate: candidate_pb2.Candidate, reason: str) -> None:
        """Notes a candidate passed over without a call (for the record: a
        fallback there is explained)."""
        if any(r.deployment == candidate.deployment and r.model_id == candidate.model_id for r in self.skipped):
            return
        index = next(i for i, c in self._candidates if c is candidate)
        self.skipped.append(AttemptReport(index, candidate.deployment, candidate.model_id, "skipped", reason))


    async def _next_call(self, hedge: bool = False) -> tuple[int, candidate_pb2.Candidate, DeploymentHealth,
                                                             Permit] | None:
        """The next (index, candidate, health, permit) to call, after the
        backoff a retry on the same deployment waits; None when the list,
        or the budget, is spent."""
        while self._next < len(self._candidates):
            index, candidate = self._candidates[self._next]
            if self._tries >= self._gen.policy.attempts_per_candidate or (
                    self._tries and self.last is not None and self.last.metadata.get(NO_RETRY)):
                self._next += 1
                self._tries = 0
                continue
            if self._tries and self.last is not None:
                delay = self._gen.backoff(self._tries, self.last)
                remaining = _remaining()
                if delay > self._gen.policy.backoff_max_seconds or (remaining is not None and delay >= remaining):
                    # The deployment asks for a longer wait (retry-after) than
                    # a retry may take: the next candidate rather than waiting.
                    self._next += 1
                    self._tries = 0
                    continue
                await asyncio.sleep(delay)
            admitted = self._admit(candidate)
            if admitted is None:
                self._next += 1
                self._tries = 0
                continue
            health, permit = admitted
            if not hedge and self._extra and not self.retry_budget.try_withdraw():
                # Retries and fallbacks may not multiply an outage's load.
                metrics.BUDGET_EXHAUSTED.labels("retry").inc()
                permit.release("ignore")
                health.breaker.release()
                return None
            self._extra = True
            self._tries += 1
            return index, candidate, health, permit
        if not hedge and self._panic_now():
            return await self._next_call()
        return None

    def _panic_now(self) -> bool:
        """When every candidate's breaker is open and no attempt was made,
        the request walks its candidates as if the breakers were closed
        (retries, fallback and budget as usual): breakers move traffic to
        healthy deployments, and with none left a request is better tried
        than refused (Envoy's panic threshold: never eject every host)."""
        if self._extra or self._ejected is None or self._panicked:
            return False
        self._panicked = True
        metrics.BREAKER_PANIC.labels(self._ejected[0].deployment).inc()
        self._next, self._tries = 0, 0
        return True

    def _start(self, call: tuple[int, candidate_pb2.Candidate, DeploymentHealth, Permit], request: wire_pb2.WireRequest,
               hedge: bool) -> _Attempt:
        index, candidate, health, permit = call
        upstream = self._gen.upstreams[candidate.deployment]
        attempt = _Attempt(index, candidate, health, permit, upstream.stream(candidate, request, _remaining()), hedge,
                           self._gen._clock, self._buffered)
        self.started.append(attempt)
        if hedge:
            # A hedge goes to another candidate, never back to the same deployment now.
            self._next += 1
            self._tries = 0
        return attempt

    def failed(self, candidate: candidate_pb2.Candidate, health: DeploymentHealth, err: SluiceError,
               rtt: float) -> None:
        """Records a unary call's failure (see `judge`)."""
        _count(candidate, err.reason.value)
        if self.judge(candidate, err):
            health.breaker.record_failure()
        else:
            health.breaker.record_success()

    def judge(self, candidate: candidate_pb2.Candidate, err: SluiceError) -> bool:
        """What a failure before the first token means for the walk; True
        when it counts against the deployment. Raises `err` when no other
        candidate would answer differently (the request's own fault).

        - retryable (overloaded, rate limited, 5xx, connection, timeout):
          retry or fall back;
        - not found (the model is not enabled on that deployment, a
          project or region without it): fall back, never retry there;
        - the request refused by a fallback model (it lacks something the
          requested model takes: thinking, effort, a prefill): the next
          candidate may take it; the error the client gets stays the last
          retryable one."""
        if err.reason in RETRYABLE:
            self.last = err
            log.info("upstream %s (%s) failed: %s", candidate.deployment, candidate.model_id, err)
            return True
        if err.reason in _NOT_HERE:
            self.last = err
            self._tries = self._gen.policy.attempts_per_candidate  # next candidate, no retry here
            log.warning("upstream %s does not serve %s: %s", candidate.deployment, candidate.model_id, err)
            return True
        if err.reason in _REFUSED and candidate.model_id != self._requested_model:
            self.last = self.last or err
            self._tries = self._gen.policy.attempts_per_candidate
            log.info("fallback %s on %s cannot take this request: %s", candidate.model_id, candidate.deployment, err)
            return False
        raise err

    async def calls(self) -> AsyncIterator[tuple[candidate_pb2.Candidate, Upstream, DeploymentHealth]]:
        """For unary calls (count_tokens): each call to make, in order."""
        while True:
            call = await self._next_call()
            if call is None:
                raise self._fail_all()
            _, candidate, health, permit = call
            permit.release("ignore")  # counting is not a stream: not held against the limit
            yield candidate, self._gen.upstreams[candidate.deployment], health

    async def first_token(self, request: wire_pb2.WireRequest, reports: list[AttemptReport]) -> _Attempt:
        """The first attempt to reach its first token, racing a hedge
        against a slow one; every failed or cancelled attempt is appended
        to `reports`. Raises when none gets there."""
        while True:
            call = await self._next_call()
            if call is None:
                raise self._fail_all()
            primary = self._start(call, request, hedge=False)
            winner = await self._race(primary, request, reports)
            if winner is not None:
                return winner

    async def _race(self, primary: _Attempt, request: wire_pb2.WireRequest,
                    reports: list[AttemptReport]) -> _Attempt | None:
        """`primary` to its first token, with a hedge when it is slow. The
        winner, or None when every attempt in the race failed (reported).

        The events before the first token are held at most
        `first_token_hold_seconds` from the start: then the attempt holding
        them wins as it is (its `pending` task still reading to the first
        token), so a long silence before the first token reaches the client
        as message_start and pings, as the API sends them."""
        clock = self._gen._clock
        delay = self._gen.hedge_delay(primary.candidate)
        hold_at = _NEVER if self._buffered else primary.sent + self._gen.policy.first_token_hold_seconds
        racing: dict[asyncio.Task, _Attempt] = {asyncio.ensure_future(primary.first_token()): primary}
        hedged = delay is None
        try:
            while racing:
                now = clock()
                wake = hold_at if now < hold_at else now + _HOLD_POLL_S
                if not hedged:
                    wake = min(wake, primary.sent + delay)  # type: ignore[operator]  # not hedged: delay is not None
                done, _ = await asyncio.wait(racing, timeout=None if wake == _NEVER else max(0.0, wake - now),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    now = clock()
                    if not hedged and now >= primary.sent + delay:  # type: ignore[operator]  # not hedged: delay is not None
                        hedged = True
                        hedge = await self._hedge(primary)
                        if hedge is not None:
                            attempt = self._start(hedge, request, hedge=True)
                            racing[asyncio.ensure_future(attempt.first_token())] = attempt
                    if now >= hold_at:
                        holding = [(task, a) for task, a in racing.items() if a.held]
                        if holding:
                            task, attempt = holding[0]
                            racing.pop(task)
                            attempt.pending = task
                            await self._won(attempt, racing, reports)
                            return attempt
                    continue
                for task in done:
                    attempt = racing.pop(task)
                    err = task.exception()
                    if err is None:
                        await self._won(attempt, racing, reports)
                        return attempt
                    if not isinstance(err, SluiceError):
                        raise err
                    if attempt.hedge:
                        metrics.HEDGES.labels(attempt.candidate.deployment, "failed").inc()
                    self._attempt_failed(attempt, err, reports)
                    if not racing and not hedged:
                        return None
            return None
        except BaseException:
            for task, attempt in racing.items():
                task.cancel()
                await _settle(task)
                await attempt.cancel()
            raise

    async def _won(self, attempt: _Attempt, racing: dict[asyncio.Task, _Attempt],
                   reports: list[AttemptReport]) -> None:
        """Cancels the attempts that lost to `attempt` and reports them."""
        for other_task, other in racing.items():
            other_task.cancel()
            await _settle(other_task)
            await other.cancel()
            reports.append(other.report("cancelled"))
            if other.hedge:
                metrics.HEDGES.labels(other.candidate.deployment, "lost").inc()
        racing.clear()
        if attempt.hedge:
            metrics.HEDGES.labels(attempt.candidate.deployment, "won").inc()

    async def _hedge(self, primary: _Attempt) -> tuple[int, candidate_pb2.Candidate, DeploymentHealth,
                                                        Permit] | None:
        """The call a hedge makes: the same model on another deployment
        (a hedge races a slow first token; it never changes the model the
        client gets), if one admits it and the hedge budget allows."""
        for position in range(self._next + 1, len(self._candidates)):
            index, candidate = self._candidates[position]
            if candidate.model_id != primary.candidate.model_id or candidate.deployment == primary.candidate.deployment:
                continue
            admitted = self._admit(candidate)
            if admitted is None:
                continue
            health, permit = admitted
            if not self.hedge_budget.try_withdraw():
                metrics.BUDGET_EXHAUSTED.labels("hedge").inc()
                permit.release("ignore")
                health.breaker.release()
                return None
            self._next, self._tries = position, 0
            return index, candidate, health, permit
        return None

    def _attempt_failed(self, attempt: _Attempt, err: SluiceError, reports: list[AttemptReport]) -> None:
        reports.append(attempt.report("failed", err.reason.value))
        try:
            against = self.judge(attempt.candidate, err)
        except SluiceError:
            attempt.finish(err)  # not the deployment's fault
            raise
        attempt.finish(err if against else None)

    async def continuation(self, request: wire_pb2.WireRequest, text: _TextSoFar,
                           failed: _Attempt, reports: list[AttemptReport]) -> _Attempt | None:
        """The next candidate of the same model (another deployment: the
        client must not get half an answer from one model and the rest from
        another) that takes a prefill, reached its first token with the
        partial answer as prefill; None when there is none (or the budget
        is spent)."""
        if self._next < len(self._candidates) and self._candidates[self._next][1] is failed.candidate:
            self._next += 1
            self._tries = 0
        while True:
            call = await self._next_call()
            if call is None:
                return None
            _index, candidate, health, permit = call
            if not candidate.accepts_prefill or candidate.model_id != failed.candidate.model_id:
                permit.release("ignore")
                health.breaker.release()
                self._next += 1
                self._tries = 0
                continue
            prefilled = wire_pb2.WireRequest(body=text.prefilled(request.body), anthropic_version=request.anthropic_version,
                                             anthropic_beta=request.anthropic_beta)
            attempt = self._start(call, prefilled, hedge=False)
            try:
                return await attempt.first_token()
            except SluiceError as err:
                try:
                    self._attempt_failed(attempt, err, reports)
                except SluiceError:
                    return None


class _TextSoFar:
    """What a text-only answer delivered, to continue it elsewhere."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.open_index: int | None = None
        self.blocks = 0
        self.other = False  # a tool call or thinking block was in the answer
        self.first_usage: dict = {}  # the first attempt's message_start usage: the client's input

    def observe(self, event: Event) -> None:
        kind = event.type
        if kind == ev.MESSAGE_START and not self.first_usage:
            message = event.view.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                self.first_usage = message["usage"]
        elif kind == ev.CONTENT_BLOCK_START:
            block = event.view.get("content_block") or {}
            self.blocks += 1
            if block.get("type") == "text":
                self.open_index = event.view.get("index")
                if block.get("text"):
                    self.parts.append(block["text"])
            else:
                self.other = True
        elif kind == ev.CONTENT_BLOCK_DELTA:
            delta = event.view.get("delta") or {}
            if delta.get("type") == "text_delta":
                self.parts.append(str(delta.get("text") or ""))
            elif delta.get("type") != "citations_delta":
                self.other = True
        elif kind == ev.CONTENT_BLOCK_STOP:
            self.open_index = None

    def continuable(self) -> bool:
        """Only a text answer whose one text block is still open."""
        return not self.other and self.blocks == 1 and self.open_index is not None and bool(self.parts)

    @property
    def delivered_tokens(self) -> int:
        return tokens_for_chars(sum(map(len, self.parts)))

    def prefilled(self, template: bytes) -> bytes:
        """The request body with the partial text appended as the final
        assistant turn (the API continues a prefill where it ends), and
        max_tokens less what was delivered, so the whole answer stays
        within the client's max_tokens."""
        doc = jsontext.read(template)
        messages = list(doc.get("messages") or [])
        # The API refuses a final assistant turn ending in whitespace.
        messages.append({"role": "assistant", "content": "".join(self.parts).rstrip()})
        doc["messages"] = messages
        if isinstance(doc.get("max_tokens"), int):
            doc["max_tokens"] = max(1, doc["max_tokens"] - self.delivered_tokens)
        return jsontext.dumps(doc).encode("utf-8")

    def spliced(self, events: list[Event]) -> list[Event]:
        """The continuation's first events as a continuation of the open
        block: its message_start and the opening of its first text block
        are dropped (the client has them), its text block takes the open
        index."""
        out = []
        for event in events:
            renumbered = self.renumber(event)
            if renumbered is not None:
                out.append(renumbered)
        return out

    def renumber(self, event: Event) -> Event | None:
        """The continuation's event as part of the first answer: its start
        dropped, block indices shifted, and its usage counting the output
        delivered before (so the client's usage is the whole answer's)."""
        if event.type == ev.MESSAGE_START or (event.type == ev.CONTENT_BLOCK_START
                                              and event.view.get("index") == 0):
            return None
        if event.type == ev.MESSAGE_DELTA:
            view = event.view
            usage = view.get("usage")
            if isinstance(usage, dict):
                # The client's input is the first attempt's (the prefill is
                # Sluice's cost); its output, both attempts'.
                merged = {**usage, **{k: v for k, v in self.first_usage.items() if k in usage and "input" in k}}
                if isinstance(usage.get("output_tokens"), int):
                    merged["output_tokens"] = usage["output_tokens"] + self.delivered_tokens
                return Event.of({**view, "usage": merged})
            return event
        if event.type in (ev.CONTENT_BLOCK_DELTA, ev.CONTENT_BLOCK_STOP, ev.CONTENT_BLOCK_START):
            index = event.view.get("index")
            if isinstance(index, int) and self.open_index is not None:
                return ev.with_index(event, index + self.open_index)
        return event


# Candidate.provider -> the GenAI conventions' gen_ai.provider.name.
_GEN_AI_PROVIDERS = {"anthropic": "anthropic", "vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock"}


def _count(candidate: candidate_pb2.Candidate, outcome: str) -> None:
    metrics.UPSTREAM_ATTEMPTS.labels(candidate.deployment, candidate.provider, candidate.model_id, outcome).inc()


async def _settle(task: asyncio.Task) -> None:
    with suppress(BaseException):
        await task


def _remaining() -> float | None:
    ctx = call_context.current()
    return ctx.remaining() if ctx else None
