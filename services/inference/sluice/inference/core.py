"""Calls upstream models: retry before the first event, then fall back.

A candidate is tried, and retried on a retryable failure (overloaded, rate
limited, 5xx, connection lost) with exponential backoff, until its attempts
run out; then the next candidate is tried. Once an event has been passed on
the response is committed: a later failure ends the stream with that error,
never a silent switch to another model mid-answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from sluice.llm.v1 import messages_pb2
from sluice.routing.v1 import candidate_pb2
from sluice.rpc import context as call_context
from sluice.rpc.errors import Reason, SluiceError
from sluice.telemetry import metrics

log = logging.getLogger(__name__)

RETRYABLE = frozenset(
    {Reason.UPSTREAM_OVERLOADED, Reason.UPSTREAM_RATE_LIMITED, Reason.UPSTREAM_ERROR, Reason.UPSTREAM_UNAVAILABLE}
)


class Upstream(Protocol):
    """One provider adapter. Raises SluiceError with an UPSTREAM_* reason."""

    def stream(
        self, candidate: candidate_pb2.Candidate, params: messages_pb2.MessageParams, timeout: float | None
    ) -> AsyncIterator[messages_pb2.StreamEvent]: ...


class Generator:
    def __init__(self, upstreams: dict[str, Upstream], retries_per_candidate: int, backoff_s: float) -> None:
        self._upstreams = upstreams
        self._retries = retries_per_candidate
        self._backoff = backoff_s

    async def generate(
        self, params: messages_pb2.MessageParams, candidates: list[candidate_pb2.Candidate]
    ) -> AsyncIterator[messages_pb2.StreamEvent]:
        if not candidates:
            raise SluiceError(Reason.NO_UPSTREAM, "no candidate model to call")
        last: SluiceError | None = None
        for candidate in candidates:
            upstream = self._upstreams.get(candidate.provider)
            if upstream is None:
                last = SluiceError(Reason.NO_UPSTREAM, f"no upstream configured for provider {candidate.provider!r}")
                continue
            for attempt in range(self._retries + 1):
                if attempt:
                    await self._sleep_backoff(attempt, last)
                started = False
                sent = time.perf_counter()
                stream = upstream.stream(candidate, params, _remaining())
                outcome = "ok"
                try:
                    async for event in stream:
                        if not started:
                            started = True
                            metrics.UPSTREAM_TTFT_SECONDS.labels(candidate.provider, candidate.model_id).observe(
                                time.perf_counter() - sent
                            )
                        yield event
                    return
                except SluiceError as err:
                    outcome = err.reason.value
                    if started or err.reason not in RETRYABLE:
                        raise
                    last = err
                    log.info("upstream %s/%s attempt %d failed: %s", candidate.provider, candidate.model_id,
                             attempt + 1, err)
                except (asyncio.CancelledError, GeneratorExit):
                    outcome = "cancelled"
                    raise
                finally:
                    await stream.aclose()
                    metrics.UPSTREAM_ATTEMPTS.labels(candidate.provider, candidate.model_id, outcome).inc()
        assert last is not None
        raise last

    async def _sleep_backoff(self, attempt: int, last: SluiceError | None) -> None:
        delay = self._backoff * (2 ** (attempt - 1))
        if last is not None and last.retry_after_s is not None:
            delay = max(delay, last.retry_after_s)
        remaining = _remaining()
        if remaining is not None and delay >= remaining:
            # Waiting would spend the whole deadline: report the failure now.
            assert last is not None
            raise last
        await asyncio.sleep(delay)


def _remaining() -> float | None:
    ctx = call_context.current()
    return ctx.remaining() if ctx else None
