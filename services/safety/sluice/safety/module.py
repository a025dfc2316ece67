"""Safety service wiring."""

from __future__ import annotations

from sluice.runtime.modules import Module, Runtime
from sluice.safety.core import PassThroughPolicy
from sluice.safety.servicer import SafetyServicer
from sluice.safety.v1 import safety_service_pb2


async def init(rt: Runtime) -> None:
    rt.serve(SafetyServicer(PassThroughPolicy()), safety_service_pb2.DESCRIPTOR.services_by_name["SafetyService"])


MODULE = Module(name="safety", depends_on=(), init=init)
