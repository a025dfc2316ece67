"""gRPC face of the safety service."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sluice.safety.core import SafetyPolicy
from sluice.safety.v1 import safety_service_pb2 as pb


class SafetyServicer:
    def __init__(self, policy: SafetyPolicy) -> None:
        self._policy = policy

    async def CheckInput(self, request: pb.CheckInputRequest, context: object) -> pb.CheckInputResponse:
        return self._policy.check_input(request.principal, request.params)

    async def FilterOutput(self, requests: AsyncIterator[pb.FilterOutputRequest], context: object
                           ) -> AsyncIterator[pb.FilterOutputResponse]:
        async for response in self._policy.filter_output(requests):
            yield response
