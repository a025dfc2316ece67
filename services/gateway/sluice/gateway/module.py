"""Gateway wiring: clients for every stage, the gRPC API and the HTTP facade."""

from __future__ import annotations

import asyncio

from sluice.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from sluice.cache.v1 import cache_service_pb2, cache_service_pb2_grpc
from sluice.events.emitter import open_emitter
from sluice.gateway.accounting import EventRecorder
from sluice.gateway.http_facade import MessagesFacade
from sluice.gateway.pipeline import Pipeline, Stages
from sluice.gateway.servicer import GatewayServicer
from sluice.gateway.v1 import gateway_service_pb2
from sluice.inference.v1 import inference_service_pb2, inference_service_pb2_grpc
from sluice.resilience.shedding import LagMonitor, LoadShedder
from sluice.routing.v1 import routing_service_pb2, routing_service_pb2_grpc
from sluice.runtime.modules import Module, Runtime
from sluice.safety.v1 import safety_service_pb2, safety_service_pb2_grpc
from sluice.telemetry import metrics


def _svc(module, name: str):
    return module.DESCRIPTOR.services_by_name[name]


async def init(rt: Runtime) -> None:
    cfg = rt.settings.gateway
    checks = {
        "safety": rt.client("safety", _svc(safety_service_pb2, "SafetyService"),
                            safety_service_pb2_grpc.SafetyServiceStub),
        "cache": rt.client("cache", _svc(cache_service_pb2, "CacheService"), cache_service_pb2_grpc.CacheServiceStub),
        "routing": rt.client("routing", _svc(routing_service_pb2, "RoutingService"),
                             routing_service_pb2_grpc.RoutingServiceStub),
    }
    stages = Stages(
        auth=rt.client("auth", _svc(auth_service_pb2, "AuthService"), auth_service_pb2_grpc.AuthServiceStub),
        inference=rt.client("inference", _svc(inference_service_pb2, "InferenceService"),
                            inference_service_pb2_grpc.InferenceServiceStub),
        checks_in_process=all(stub.local for stub in checks.values()),
        **checks,
    )
    emitter = open_emitter(rt.settings.region, rt.settings.events)
    emitter.start()
    events = rt.settings.events
    rt.announcements["events"] = (f"{emitter.spool.folder} -> Kafka {events.kafka_bootstrap}" if events.kafka_bootstrap
                                  else f"spooled in {emitter.spool.folder} (no Kafka configured: a sink on this spool "
                                  "stores them; `sluice events spooled` lists what waits)")

    async def stop_events() -> None:
        # After the pipeline drained: every finished request's events are queued.
        await asyncio.to_thread(emitter.stop, rt.settings.server.drain_grace_seconds)

    rt.on_stop(stop_events)
    shedder = LoadShedder(cfg.max_in_flight, cfg.shed_thresholds, cfg.overload_lag_seconds)
    pipeline = Pipeline(stages, cfg.stage_timeout_seconds, EventRecorder(emitter), shedder,
                        tenant_label=rt.settings.telemetry.tenant_label, mode=rt.mode)
    rt.on_stop(pipeline.drain)
    lag = asyncio.get_running_loop().create_task(_watch_lag(shedder))

    async def stop_lag() -> None:
        lag.cancel()
        await asyncio.gather(lag, return_exceptions=True)

    rt.on_stop(stop_lag)
    rt.serve(GatewayServicer(pipeline, cfg.default_timeout_seconds, cfg.stream_ping_interval_seconds),
             _svc(gateway_service_pb2, "GatewayService"))
    rt.add_http("gateway", MessagesFacade(pipeline, cfg.max_body_bytes, cfg.default_timeout_seconds,
                                          cfg.stream_ping_interval_seconds).app(),
                cfg.http_listen)


async def _watch_lag(shedder: LoadShedder, every_s: float = 0.1) -> None:
    """Feeds the event loop's lag (how late a timer fires) to the shedder,
    and the utilisation to its gauge."""
    loop = asyncio.get_running_loop()
    monitor = LagMonitor(shedder.report_lag, clock=loop.time)
    while True:
        expected = loop.time() + every_s
        await asyncio.sleep(every_s)
        monitor.observe(expected)
        metrics.GATEWAY_UTILISATION.set(shedder.utilisation)


MODULE = Module(name="gateway", depends_on=("auth", "safety", "cache", "routing", "inference"), init=init,
                sections=("gateway", "events"))
