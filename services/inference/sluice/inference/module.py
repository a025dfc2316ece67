"""Inference service wiring: one provider client per deployment."""

from __future__ import annotations

from sluice.catalog.deployments import load_for
from sluice.inference.core import Generator, Upstream
from sluice.inference.providers import build_upstream
from sluice.inference.servicer import InferenceServicer
from sluice.inference.v1 import inference_service_pb2
from sluice.runtime.modules import Module, Runtime
from sluice.storage.fleet import connect_for


async def init(rt: Runtime) -> None:
    cfg = rt.settings.inference
    _, deployments = load_for(rt.settings)
    upstreams: dict[str, Upstream] = {}
    for dep_id, deployment in deployments.deployments.items():
        endpoint = cfg.endpoints.get(dep_id)
        adapter = build_upstream(dep_id, deployment, simulator_url=cfg.simulator_url,
                                 base_url=endpoint.base_url if endpoint else "",
                                 connect_timeout_s=cfg.connect_timeout_seconds, max_connections=cfg.max_connections)
        rt.on_stop(adapter.aclose)
        upstreams[dep_id] = adapter
    # Latency and breaker state go to the region's routers through the fleet store.
    fleet = connect_for(rt.settings, "inference")
    rt.on_stop(fleet.close)
    rt.in_background(fleet.run_flushes(rt.settings.routing.fleet_interval_seconds), "fleet-flush")
    generator = Generator(upstreams, cfg.resilience,
                          {dep_id: d.max_concurrency for dep_id, d in deployments.deployments.items()}, fleet=fleet)
    rt.serve(InferenceServicer(generator), inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"])


MODULE = Module(name="inference", depends_on=(), init=init,
                sections=("inference", "catalog", "routing", "auth"))
