"""Simulator wiring: an HTTP server only, no gRPC service."""

from __future__ import annotations

from sluice.runtime.modules import Module, Runtime
from sluice.simulator.app import Simulator


async def init(rt: Runtime) -> None:
    simulator = Simulator(rt.settings.simulator)
    rt.add_http("simulator", simulator.app(), rt.settings.simulator.listen)


MODULE = Module(name="simulator", depends_on=(), init=init, sections=("simulator",))
