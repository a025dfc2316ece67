"""The per-request call context that travels with a request through every hop.

The entry point (gateway servicer or HTTP facade, or the server wrapper for a
call that arrived over gRPC) sets it; `outgoing()` gives each downstream call
the request id and the time left, which `sluice.rpc.client` puts in the call's
metadata and deadline, so the request id and the client's deadline reach
every service and, from inference, the upstream model. It sits below `rpc`
and `telemetry` (both read it; it imports neither).
"""

from __future__ import annotations

import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass

_current: ContextVar[CallContext | None] = ContextVar("sluice_call_context", default=None)


@dataclass(frozen=True, slots=True)
class CallContext:
    request_id: str
    # time.monotonic() value after which the request is abandoned; None = no deadline.
    deadline: float | None
    # time.monotonic() when the request reached this process.
    started: float = 0.0

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()


def new_request_id() -> str:
    # Same shape as Anthropic's request ids, so logs line up across both.
    return "req_" + secrets.token_hex(12)


def current() -> CallContext | None:
    return _current.get()


def begin(request_id: str | None, timeout: float | None, started: float | None = None) -> CallContext:
    """Starts a request's context in the current task; `started` keeps an
    earlier arrival time when a context is begun again with a new deadline."""
    now = time.monotonic()
    deadline = now + timeout if timeout is not None else None
    ctx = CallContext(request_id or new_request_id(), deadline, started or now)
    _current.set(ctx)
    return ctx


def outgoing(timeout: float | None = None) -> tuple[str | None, float | None]:
    """(the current request's id, or None outside a request; the timeout for
    a downstream call made on its behalf: `timeout` capped at the time left
    before the request's deadline, never negative)."""
    ctx = _current.get()
    if ctx is None:
        return None, timeout
    remaining = ctx.remaining()
    if remaining is not None:
        # A non-positive timeout makes gRPC fail at once with DEADLINE_EXCEEDED.
        remaining = max(remaining, 0.0)
        timeout = remaining if timeout is None else min(timeout, remaining)
    return ctx.request_id, timeout
