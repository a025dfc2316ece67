"""gRPC face of the safety service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sluice.safety.core import SafetyPolicy
from sluice.safety.v1 import safety_service_pb2 as pb

# Checking takes ~1 ms per 4 KB of prompt text. Above this size the check runs
# on a worker thread: it holds the GIL all the same, but the event loop gets
# turns in between, so other requests' small checks and streams keep moving.
_OFF_LOOP_BYTES = 64 * 1024


class SafetyServicer:
    def __init__(self, policy: SafetyPolicy) -> None:
        self._policy = policy

    async def CheckInput(self, request: pb.CheckInputRequest, context: object) -> pb.CheckInputResponse:
        if len(request.request.body) > _OFF_LOOP_BYTES:
            return await asyncio.to_thread(self._policy.check_input, request.principal, request.request)
        return self._policy.check_input(request.principal, request.request)

    async def FilterOutput(self, requests: AsyncIterator[pb.FilterOutputRequest], context: object
                           ) -> AsyncIterator[pb.FilterOutputResponse]:
        async for response in self._policy.filter_output(requests):
            yield response
