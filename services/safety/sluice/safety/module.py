"""Safety service wiring: the policy folder, its watcher, the servicer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sluice.runtime.modules import Module, Runtime
from sluice.safety.core import PolicyStore, SafetyPolicy
from sluice.safety.policy import SHIPPED_POLICY_DIR
from sluice.safety.servicer import SafetyServicer
from sluice.safety.v1 import safety_service_pb2


async def init(rt: Runtime) -> None:
    settings = rt.settings.safety
    folder = Path(settings.policy_dir) if settings.policy_dir else SHIPPED_POLICY_DIR
    store = PolicyStore(folder)
    rt.serve(SafetyServicer(SafetyPolicy(store)), safety_service_pb2.DESCRIPTOR.services_by_name["SafetyService"])
    rt.announcements["safety_policy"] = ", ".join(store.policy.versions) + f" from {folder}"
    if settings.reload_interval_seconds > 0:
        stop = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(store.watch(settings.reload_interval_seconds, stop))

        async def stop_watching() -> None:
            stop.set()
            await watcher

        rt.on_stop(stop_watching)


MODULE = Module(name="safety", depends_on=(), init=init, sections=("safety",))
