"""gRPC face of the routing service."""

from __future__ import annotations

from sluice.routing.core import Router
from sluice.routing.v1 import routing_service_pb2 as pb


class RoutingServicer:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def Route(self, request: pb.RouteRequest, context: object) -> pb.RouteResponse:
        candidates = self._router.route(request.principal, request.requested_model)
        return pb.RouteResponse(candidates=candidates, catalog_version=self._router.catalog.version)
