"""Routing service wiring."""

from __future__ import annotations

from sluice.catalog.deployments import load_for
from sluice.routing.core import Router
from sluice.routing.servicer import RoutingServicer
from sluice.routing.v1 import routing_service_pb2
from sluice.runtime.modules import Module, Runtime


async def init(rt: Runtime) -> None:
    cfg = rt.settings.routing
    catalog, deployments = load_for(rt.settings)
    router = Router(catalog, deployments, rt.settings.region, cfg.default_model, cfg.max_candidates)
    rt.serve(RoutingServicer(router), routing_service_pb2.DESCRIPTOR.services_by_name["RoutingService"])


MODULE = Module(name="routing", depends_on=(), init=init)
