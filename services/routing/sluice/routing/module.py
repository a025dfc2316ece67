"""Routing service wiring: catalog, deployments, policies and classifier,
and the fleet store's view (latency history, breaker state, cost shift)
refreshed in the background."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import redis.exceptions

from sluice.catalog.deployments import load_for
from sluice.config import ConfigError, Settings
from sluice.routing.affinity import Affinity
from sluice.routing.classifier import ARTIFACT, TaskClassifier
from sluice.routing.controller import CostController
from sluice.routing.core import Router
from sluice.routing.policy import load_policies
from sluice.routing.servicer import RoutingServicer
from sluice.routing.v1 import routing_service_pb2
from sluice.runtime.modules import Module, Runtime
from sluice.storage.fleet import FleetStore, connect_for
from sluice.storage.prefix_ledger import connect_ledger
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


def load_classifier(path: str) -> TaskClassifier:
    """The classifier artifact at `path` (or the shipped one). Raises
    ConfigError when it cannot be read."""
    try:
        return TaskClassifier.load(Path(path) if path else ARTIFACT)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"routing.classifier_path {path or ARTIFACT}: {exc}") from None


async def _follow(router: Router, fleet: FleetStore, interval: float) -> None:
    """Every `interval`: send the controller's steps, adopt the fleet's view."""
    while True:
        await asyncio.sleep(interval)
        steps = router.controller.drain()
        try:
            snapshot = await fleet.refresh(steps)
        except (redis.exceptions.RedisError, OSError) as exc:
            metrics.FLEET_SYNC_FAILURES.labels("routing").inc()
            log.debug("fleet store refresh failed: %s", exc)
            # Most likely not counted: take them again next time (a failure
            # after Redis applied them counts them twice, one interval's worth).
            for scope, step in steps.items():
                router.controller.take_back(scope, step)
            continue
        router.adopt(snapshot)


def build_router(settings: Settings, controller: CostController | None = None,
                 cost_target_usd: float | None = None) -> Router:
    """The router from settings: catalog, deployments, policies, classifier.
    Raises ConfigError (CatalogError) naming the file at fault."""
    cfg = settings.routing
    catalog, deployments = load_for(settings)
    policies = load_policies(catalog, cfg.policies_path or None)
    return Router(catalog, deployments, settings.region, cfg.default_model, cfg.max_candidates,
                  policies=policies, classifier=load_classifier(cfg.classifier_path),
                  controller=controller or CostController(cfg.cost_controller_gain),
                  cost_target_usd=cfg.cost_target_usd if cost_target_usd is None else cost_target_usd)


async def init(rt: Runtime) -> None:
    cfg = rt.settings.routing
    router = build_router(rt.settings)
    fleet = connect_for(rt.settings, "routing")
    rt.on_stop(fleet.close)
    rt.in_background(_follow(router, fleet, cfg.fleet_interval_seconds), "fleet-follow")
    ledger = connect_ledger(rt.settings, "routing")
    rt.on_stop(ledger.close)
    affinity = Affinity(ledger, router.catalog.lookup, lambda: router.slow)
    rt.serve(RoutingServicer(router, affinity), routing_service_pb2.DESCRIPTOR.services_by_name["RoutingService"])


MODULE = Module(name="routing", depends_on=(), init=init,
                sections=("routing", "catalog", "inference", "auth"))
