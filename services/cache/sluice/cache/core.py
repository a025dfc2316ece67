"""Response cache. Nothing is stored yet, so every lookup is a miss; the exact
response cache and prompt-prefix accounting come with their own issue."""

from __future__ import annotations

from sluice.auth.v1 import principal_pb2
from sluice.llm.v1 import wire_pb2


class NoResponseCache:
    async def lookup(self, principal: principal_pb2.Principal, request: wire_pb2.WireRequest
                     ) -> list[wire_pb2.WireEvent] | None:
        """The stored answer's events for an identical request, or None."""
        return None
