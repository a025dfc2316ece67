"""Calls upstream models: retry before the first event, then fall back.

A candidate is tried, and retried on a retryable failure (overloaded, rate
limited, 5xx, connection lost) with exponential backoff, until its attempts
run out; then the next candidate is tried. Once an event has been passed on
the response is committed: a later failure ends the stream with that error,
never a silent switch to another model mid-answer. count_tokens walks the
candidates the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Protocol, TypeVar

from sluice.llm.v1 import wire_pb2
from sluice.routing.v1 import candidate_pb2
from sluice.rpc import context as call_context
from sluice.rpc.errors import Reason, SluiceError
from sluice.telemetry import metrics
from sluice.wire.events import Event

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE = frozenset(
    {Reason.UPSTREAM_OVERLOADED, Reason.UPSTREAM_RATE_LIMITED, Reason.UPSTREAM_ERROR, Reason.UPSTREAM_UNAVAILABLE}
)


class Upstream(Protocol):
    """One provider adapter. Raises SluiceError with an UPSTREAM_* reason."""

    def stream(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
               timeout: float | None) -> AsyncIterator[Event]: ...

    async def count_tokens(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
                           timeout: float | None) -> tuple[int, bytes]: ...


class Generator:
    def __init__(self, upstreams: dict[str, Upstream], retries_per_candidate: int, backoff_s: float) -> None:
        self.upstreams = upstreams
        self.retries = retries_per_candidate
        self._backoff = backoff_s

    async def generate(self, request: wire_pb2.WireRequest, candidates: list[candidate_pb2.Candidate]
                       ) -> AsyncIterator[Event]:
        """The first answering candidate's events (see the module docstring)."""
        walk = _Walk(self, candidates)
        async with aclosing(walk.attempts()) as attempts:
            async for candidate, upstream, attempt in attempts:
                started = False
                sent = time.perf_counter()
                stream = upstream.stream(candidate, request, _remaining())
                outcome = "ok"
                try:
                    async for event in stream:
                        if not started:
                            started = True
                            metrics.UPSTREAM_TTFT_SECONDS.labels(candidate.provider, candidate.model_id).observe(
                                time.perf_counter() - sent)
                        yield event
                    return
                except SluiceError as err:
                    outcome = err.reason.value
                    if started:
                        raise
                    walk.failed(candidate, attempt, err)
                except (asyncio.CancelledError, GeneratorExit):
                    outcome = "cancelled"
                    raise
                finally:
                    await stream.aclose()
                    metrics.UPSTREAM_ATTEMPTS.labels(candidate.provider, candidate.model_id, outcome).inc()

    async def count_tokens(self, request: wire_pb2.WireRequest, candidates: list[candidate_pb2.Candidate]
                           ) -> tuple[int, bytes, str]:
        """(input_tokens, the answer's JSON, the catalog id that answered)."""
        return await self._first(candidates, lambda c, u: u.count_tokens(c, request, _remaining()))

    async def _first(self, candidates: list[candidate_pb2.Candidate],
                     call: Callable[[candidate_pb2.Candidate, Upstream], Awaitable[tuple[int, bytes]]]
                     ) -> tuple[int, bytes, str]:
        walk = _Walk(self, candidates)
        async with aclosing(walk.attempts()) as attempts:
            async for candidate, upstream, attempt in attempts:
                try:
                    tokens, body = await call(candidate, upstream)
                except SluiceError as err:
                    metrics.UPSTREAM_ATTEMPTS.labels(candidate.provider, candidate.model_id, err.reason.value).inc()
                    walk.failed(candidate, attempt, err)
                    continue
                metrics.UPSTREAM_ATTEMPTS.labels(candidate.provider, candidate.model_id, "ok").inc()
                return tokens, body, candidate.model_id
        raise AssertionError("unreachable: a walk raises when every attempt failed")

    async def sleep_backoff(self, attempt: int, last: SluiceError | None) -> None:
        delay = self._backoff * (2 ** (attempt - 1))
        if last is not None and last.retry_after_s is not None:
            delay = max(delay, last.retry_after_s)
        remaining = _remaining()
        if remaining is not None and delay >= remaining:
            # Waiting would spend the whole deadline: report the failure now.
            assert last is not None
            raise last
        await asyncio.sleep(delay)


class _Walk:
    """One request's way down its candidates: yields (candidate, upstream,
    attempt) in the order to try them, sleeping the backoff between
    attempts. The caller reports a failure with `failed` (which re-raises it
    unless it is retryable) and stops iterating on success. When every
    attempt failed the last failure is raised; NO_UPSTREAM when none could
    be made."""

    def __init__(self, generator: Generator, candidates: list[candidate_pb2.Candidate]) -> None:
        self._generator = generator
        self._candidates = candidates
        self.last: SluiceError | None = None

    async def attempts(self) -> AsyncIterator[tuple[candidate_pb2.Candidate, Upstream, int]]:
        if not self._candidates:
            raise SluiceError(Reason.NO_UPSTREAM, "no candidate model to call")
        for candidate in self._candidates:
            upstream = self._generator.upstreams.get(candidate.provider)
            if upstream is None:
                self.last = SluiceError(Reason.NO_UPSTREAM, f"no upstream configured for provider {candidate.provider!r}")
                continue
            for attempt in range(self._generator.retries + 1):
                if attempt:
                    await self._generator.sleep_backoff(attempt, self.last)
                yield candidate, upstream, attempt
        assert self.last is not None
        raise self.last

    def failed(self, candidate: candidate_pb2.Candidate, attempt: int, err: SluiceError) -> None:
        if err.reason not in RETRYABLE:
            raise err
        self.last = err
        log.info("upstream %s/%s attempt %d failed: %s", candidate.provider, candidate.model_id, attempt + 1, err)


def _remaining() -> float | None:
    ctx = call_context.current()
    return ctx.remaining() if ctx else None
