"""gRPC face of the safety service."""

from __future__ import annotations

from sluice.safety.core import PassThroughPolicy
from sluice.safety.v1 import safety_service_pb2 as pb


class SafetyServicer:
    def __init__(self, policy: PassThroughPolicy) -> None:
        self._policy = policy

    async def CheckInput(self, request: pb.CheckInputRequest, context: object) -> pb.CheckInputResponse:
        verdict, redacted = await self._policy.check_input(request.principal, request.params)
        return pb.CheckInputResponse(verdict=verdict, redacted_params=redacted)
