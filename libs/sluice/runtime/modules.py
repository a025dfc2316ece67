"""Service modules and the process runtime they are started in.

Each service package exposes `MODULE` in `sluice.<service>.module`: a name,
the services it calls, and an `init(runtime)` that builds its core and
registers its servicer. `Runtime.client()` hands a module a stub for a service
it depends on: in-process when that service runs in this process, over gRPC
(to the address in `services.<name>.grpc`) when not. That is the whole
difference between `sluice serve all` and a mesh of single-service processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf import descriptor as _descriptor

from sluice.config import Settings
from sluice.rpc.client import PropagatingStub, insecure_channel
from sluice.rpc.registry import ServiceRegistry
from sluice.services import REQUEST_PATH, SERVICES, module_path

log = logging.getLogger(__name__)

# Service name -> module path, from the one list (sluice.services). `all` is
# the request path: not the simulator, which stands in for a provider, nor
# the sinks, which run once per region beside that region's Kafka (or, with
# no Kafka configured, in the gateway's process on its local event spool:
# `make run` serves all,simulator,sinks).
MODULE_PATHS = {name: module_path(name) for name in SERVICES}
ALL = REQUEST_PATH


def run_mode(targets: list[str]) -> str:
    """`all` for a process hosting every request-path service, else `mesh`
    (the `mode` label of metrics and spans)."""
    return "all" if set(ALL) <= set(targets) else "mesh"


@dataclass(frozen=True)
class Module:
    """One service as the runtime sees it (after Mimir's module registry): its name (a key of
    `sluice.services.SERVICES`), the services it calls, the settings sections it reads, and
    `init`, which builds its core and registers its servicer."""

    name: str
    # Services whose clients init() asks for; they start first when co-hosted.
    depends_on: tuple[str, ...]
    init: Callable[[Runtime], Awaitable[None]]
    # Sections of Settings the module reads, its own first (besides the process-wide `region`,
    # `services`, `server` and `telemetry`); tests/unit/test_architecture.py holds the
    # declaration to the code.
    sections: tuple[str, ...] = ()


def resolve_targets(spec: str) -> list[str]:
    """`all`, a service name, or a comma list of them, in start order."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        expanded = ALL if part == "all" else (part,)
        for name in expanded:
            if name not in MODULE_PATHS:
                raise ValueError(f"unknown service {name!r}; choose from all, {', '.join(MODULE_PATHS)}")
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError("no service given")
    return names


def load_modules(names: list[str]) -> list[Module]:
    modules = {n: importlib.import_module(MODULE_PATHS[n]).MODULE for n in names}
    ordered: list[Module] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting or any(m.name == name for m in ordered):
            return
        visiting.add(name)
        for dep in modules[name].depends_on:
            if dep in modules:
                visit(dep)
        ordered.append(modules[name])

    for n in names:
        visit(n)
    return ordered


@dataclass
class HttpSite:
    name: str
    app: web.Application
    listen: str
    # Filled in when the site is bound.
    address: str = ""


@dataclass
class Runtime:
    """What a module may use while it starts."""

    settings: Settings
    # `all` or `mesh` (run_mode of the process's targets).
    mode: str = "all"
    registry: ServiceRegistry = field(default_factory=ServiceRegistry)
    http_sites: list[HttpSite] = field(default_factory=list)
    stop_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Facts for the start-up banner, e.g. the demo key; keyed by name.
    announcements: dict[str, str] = field(default_factory=dict)
    _channels: dict[str, Any] = field(default_factory=dict)

    def serve(self, servicer: object, service: _descriptor.ServiceDescriptor) -> None:
        self.registry.add(servicer, service)

    def client(self, service_name: str, service: _descriptor.ServiceDescriptor, stub_cls: type) -> Any:
        """A stub for `service` (its descriptor; `stub_cls` the generated
        stub class): in process (a LocalStub, `local` True) when this process
        hosts it, else over one shared gRPC channel per address, dialled at
        `services.<service_name>.grpc`. Either way wrapped in a
        PropagatingStub: calls carry the request id, the deadline and, over
        the network, the trace context. Calls raise grpc.aio.AioRpcError as
        over a channel."""
        methods = [m.name for m in service.methods]
        if self.registry.hosts(service.full_name):
            return PropagatingStub(self.registry.local_stub(service.full_name), methods, local=True)
        address = self.settings.services[service_name].grpc
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = insecure_channel(address)
        return PropagatingStub(stub_cls(channel), methods)

    def add_http(self, name: str, app: web.Application, listen: str) -> HttpSite:
        site = HttpSite(name, app, listen)
        self.http_sites.append(site)
        return site

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        self.stop_hooks.append(hook)

    def in_background(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        """Runs `coroutine` as a task until the process stops (then cancelled
        and awaited); a crash is logged, not silent."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)

        def crashed(done: asyncio.Task) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.error("background task %s crashed", name, exc_info=done.exception())

        task.add_done_callback(crashed)

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

        self.on_stop(stop)

    async def close_channels(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
