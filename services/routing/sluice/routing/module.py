"""Routing service wiring."""

from __future__ import annotations

from sluice.catalog import load_catalog
from sluice.catalog.deployments import load_deployments
from sluice.routing.core import Router
from sluice.routing.servicer import RoutingServicer
from sluice.routing.v1 import routing_service_pb2
from sluice.runtime.modules import Module, Runtime


async def init(rt: Runtime) -> None:
    cfg = rt.settings.routing
    catalog = load_catalog(cfg.catalog_path or None)
    deployments = load_deployments(catalog, rt.settings.inference.deployments_path or None)
    router = Router(catalog, deployments, rt.settings.region, cfg.default_model, cfg.max_candidates)
    rt.serve(RoutingServicer(router), routing_service_pb2.DESCRIPTOR.services_by_name["RoutingService"])


MODULE = Module(name="routing", depends_on=(), init=init)
