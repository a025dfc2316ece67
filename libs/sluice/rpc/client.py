"""Clients for downstream services, local or remote, with context propagation.

`PropagatingStub` is Sluice's client interceptor. It wraps a generated stub
(remote) or a `LocalStub` and gives every call the current request id, a
timeout no later than the request's deadline and, over the network, the
trace context (W3C traceparent). Wrapping the stub, not the
channel, lets one piece of code serve both modes.
"""

from __future__ import annotations

from typing import Any

import grpc

from sluice import call_context
from sluice.rpc import headers
from sluice.telemetry import tracing

# Keepalive so a dead peer is noticed between requests, not on the next one.
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


def _propagating(call: Any, local: bool) -> Any:
    # A local callee runs in the caller's trace context: no traceparent to format.
    trace = not local

    def invoke(request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
        request_id, timeout = call_context.outgoing(timeout)
        extra: tuple[tuple[str, str], ...] = ((headers.REQUEST_ID, request_id),) if request_id is not None else ()
        if trace:
            extra += tracing.inject()  # () unless tracing is on
        if metadata:
            extra = tuple(metadata) + extra
        return call(request, timeout=timeout, metadata=extra)

    return invoke


class PropagatingStub:
    """A stub whose calls carry the current request id and deadline.
    `local`: it calls a service hosted in this process (a LocalStub)."""

    def __init__(self, stub: Any, method_names: list[str], local: bool = False) -> None:
        self.local = local
        for name in method_names:
            setattr(self, name, _propagating(getattr(stub, name), local))


def insecure_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
