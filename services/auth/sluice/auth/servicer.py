"""gRPC face of the auth service."""

from __future__ import annotations

from sluice.auth.core import Authenticator
from sluice.auth.quota import QuotaKeeper
from sluice.auth.v1 import auth_service_pb2 as pb


class AuthServicer:
    def __init__(self, core: Authenticator, quota: QuotaKeeper) -> None:
        self._core = core
        self._quota = quota

    async def Authenticate(self, request: pb.AuthenticateRequest, context: object) -> pb.AuthenticateResponse:
        return pb.AuthenticateResponse(principal=await self._core.authenticate(request.api_key))

    async def Admit(self, request: pb.AdmitRequest, context: object) -> pb.AdmitResponse:
        return await self._quota.admit(request)

    async def Settle(self, request: pb.SettleRequest, context: object) -> pb.SettleResponse:
        await self._quota.settle(request)
        return pb.SettleResponse()
