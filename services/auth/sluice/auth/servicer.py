"""gRPC face of the auth service."""

from __future__ import annotations

from sluice.auth.core import Authenticator
from sluice.auth.v1 import auth_service_pb2 as pb


class AuthServicer:
    def __init__(self, core: Authenticator) -> None:
        self._core = core

    async def Authenticate(self, request: pb.AuthenticateRequest, context: object) -> pb.AuthenticateResponse:
        return pb.AuthenticateResponse(principal=await self._core.authenticate(request.api_key))
