"""Starts the chosen services in this process and stops them gracefully."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging

from aiohttp import web

from sluice.config import Settings
from sluice.rpc.server import GrpcServer
from sluice.runtime.modules import HttpSite, Runtime, load_modules, run_mode
from sluice.telemetry import metrics, tracing

log = logging.getLogger(__name__)

try:
    _VERSION = importlib.metadata.version("sluice")
except importlib.metadata.PackageNotFoundError:  # a checkout used without `pip install -e .`
    _VERSION = "0+unknown"


def _split(listen: str) -> tuple[str, int]:
    host, port = listen.rsplit(":", 1)
    return host.strip("[]"), int(port)


def _admin_app(process: SluiceProcess) -> web.Application:
    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready" if process.ready else "draining", status=200 if process.ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class SluiceProcess:
    """One process running one or more services (``all`` or a mesh member)."""

    def __init__(self, settings: Settings, targets: list[str]) -> None:
        self.settings = settings
        self.targets = targets
        self.runtime = Runtime(settings, run_mode(targets))
        self.grpc: GrpcServer | None = None
        self.ready = False
        self._runners: list[tuple[HttpSite, web.AppRunner]] = []

    @property
    def primary(self) -> str:
        """The service whose address the process's gRPC server listens on."""
        return "gateway" if "gateway" in self.targets else self.targets[0]

    def http_address(self, name: str) -> str:
        for site, _ in self._runners:
            if site.name == name:
                return site.address
        raise KeyError(name)

    @property
    def mode(self) -> str:
        return self.runtime.mode

    def _telemetry(self) -> None:
        """Tracing, and the gauges alert rules read (sluice_info, budget, target)."""
        hosted = [t for t in self.targets if t != "simulator"] or self.targets
        service = "all" if self.mode == "all" else "+".join(hosted)
        telemetry = self.settings.telemetry
        tracing.configure(telemetry.tracing, service, self.settings.region, self.mode, _VERSION)
        metrics.INFO.labels(_VERSION, self.settings.region, self.mode, ",".join(hosted)).set(1)
        if telemetry.daily_budget_usd:
            metrics.SPEND_BUDGET_USD.labels("day").set(telemetry.daily_budget_usd)
        metrics.COST_PER_REQUEST_TARGET_USD.set(telemetry.cost_per_request_target_usd)

    async def start(self) -> None:
        self._telemetry()
        for module in load_modules(self.targets):
            await module.init(self.runtime)
        endpoint = self.settings.services[self.primary]
        if self.runtime.registry.service_names:
            self.grpc = GrpcServer(self.runtime.registry, endpoint.bind, self.settings.server.max_message_bytes)
            await self.grpc.start()
        sites = list(self.runtime.http_sites)
        if endpoint.metrics:
            sites.append(HttpSite("admin", _admin_app(self), endpoint.metrics))
        grace = self.settings.server.drain_grace_seconds
        for site in sites:
            runner = web.AppRunner(site.app, handler_cancellation=True, access_log=None, shutdown_timeout=grace)
            await runner.setup()
            host, port = _split(site.listen)
            tcp = web.TCPSite(runner, host, port, reuse_address=True)
            await tcp.start()
            bound = runner.addresses[0]
            site.address = f"{host}:{bound[1]}"
            self._runners.append((site, runner))
            log.info("HTTP %s listening on http://%s", site.name, site.address)
        self.ready = True

    async def stop(self) -> None:
        """Drains: stop taking work, let in-flight work finish within the grace period."""
        self.ready = False
        grace = self.settings.server.drain_grace_seconds
        tasks = [runner.cleanup() for _, runner in self._runners]
        if self.grpc:
            tasks.append(self.grpc.drain(grace))
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runners.clear()
        for hook in reversed(self.runtime.stop_hooks):
            try:
                await hook()
            except Exception:  # one failing hook must not skip the rest
                log.exception("stop hook failed")
        await self.runtime.close_channels()
        # Last: the spans of the drained requests go out before the process does.
        await asyncio.to_thread(tracing.shutdown)
