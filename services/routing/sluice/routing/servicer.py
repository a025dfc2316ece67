"""gRPC face of the routing service."""

from __future__ import annotations

from sluice.routing.affinity import Affinity
from sluice.routing.core import Router
from sluice.routing.v1 import routing_service_pb2 as pb


class RoutingServicer:
    """Route: the router's decision, then (for a request with cache_control
    marks, when a prefix ledger is configured) its prompt-cache plan, which
    may put a warm deployment first."""

    def __init__(self, router: Router, affinity: Affinity | None = None) -> None:
        self._router = router
        self._affinity = affinity

    async def Route(self, request: pb.RouteRequest, context: object) -> pb.RouteResponse:
        body = request.request if request.HasField("request") else None
        candidates, model, decision = self._router.route(
            request.principal, request.requested_model, request.max_tokens, request.count_tokens,
            body, request.estimated_input_tokens)
        plan = None
        if self._affinity is not None and body is not None and not request.count_tokens:
            candidates, plan = await self._affinity.plan(request.principal, body, model, candidates, decision,
                                                         request.estimated_input_tokens)
        return pb.RouteResponse(candidates=candidates, catalog_version=self._router.catalog.version,
                                model=self._router.info(model), allowed_geos=self._router.allowed_geos,
                                deployments_version=self._router.deployments.version, decision=decision,
                                prefix=plan)

    async def ListModels(self, request: pb.ListModelsRequest, context: object) -> pb.ListModelsResponse:
        data, more = self._router.list_models(request.principal, request.limit, request.before_id, request.after_id,
                                              tuple(request.lifecycle))
        return pb.ListModelsResponse(data=data, has_more=more)

    async def GetModel(self, request: pb.GetModelRequest, context: object) -> pb.GetModelResponse:
        return pb.GetModelResponse(model=self._router.get_model(request.principal, request.model_id))
