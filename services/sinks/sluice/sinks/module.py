"""`sluice serve sinks --region R`: the region's consumer of billing and audit topics."""

from __future__ import annotations

import asyncio

from sluice.config import ConfigError
from sluice.runtime.modules import Module, Runtime
from sluice.sinks.consumer import RegionalSink
from sluice.sinks.storage import RegionalStore


async def init(rt: Runtime) -> None:
    settings = rt.settings
    if not settings.events.kafka_bootstrap:
        raise ConfigError("the sinks service needs events.kafka_bootstrap: the Kafka cluster of region "
                          f"{settings.region}")
    store = RegionalStore(settings.sinks.data_dir, settings.region)
    sink = RegionalSink(settings.region, settings.events.kafka_bootstrap, settings.sinks, store)
    sink.start()

    async def stop() -> None:
        await asyncio.to_thread(sink.stop, settings.server.drain_grace_seconds)

    rt.on_stop(stop)
    rt.announcements["sinks"] = f"region {settings.region} -> {store.root}"


MODULE = Module(name="sinks", depends_on=(), init=init)
