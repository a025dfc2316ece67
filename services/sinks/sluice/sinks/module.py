"""`sluice serve sinks --region R`: the region's consumer of billing and audit events.

With `events.kafka_bootstrap` it consumes the region's Kafka topics
(production). Without it (`make run`: `sluice serve all,simulator,sinks`) it
reads the local event spool of the gateway in the same process instead;
the storing is the same either way (see consumer.py).
"""

from __future__ import annotations

import asyncio

from sluice.config import ConfigError, Settings
from sluice.events.spool import SpoolInUse
from sluice.runtime.modules import Module, Runtime
from sluice.sinks.consumer import RecordSource, RegionalSink
from sluice.sinks.kafka_source import KafkaSource
from sluice.sinks.spool_source import SpoolSource
from sluice.sinks.storage import RegionalStore


def open_source(settings: Settings, store: RegionalStore) -> RecordSource:
    """The region's Kafka when one is configured, else the local event spool."""
    if settings.events.kafka_bootstrap:
        return KafkaSource(settings.region, settings.events.kafka_bootstrap, settings.sinks)
    try:
        return SpoolSource(settings.region, settings.events, store)
    except SpoolInUse:
        raise ConfigError(
            f"the sinks service has no events.kafka_bootstrap, so it reads region {settings.region}'s local event "
            f"spool ({settings.events.spool_dir}), and another process holds it: run the sink in the gateway's "
            "process (`sluice serve all,sinks`), or give the region a Kafka cluster") from None


async def init(rt: Runtime) -> None:
    settings = rt.settings
    store = RegionalStore(settings.sinks.data_dir, settings.region)
    source = open_source(settings, store)
    sink = RegionalSink(settings.region, source, settings.sinks, store)
    sink.start()

    async def stop() -> None:
        await asyncio.to_thread(sink.stop, settings.server.drain_grace_seconds)

    rt.on_stop(stop)
    rt.announcements["sinks"] = f"region {settings.region}: {source.description} -> {store.root}"


MODULE = Module(name="sinks", depends_on=(), init=init, sections=("sinks", "events"))
