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


def open_source(settings: Settings, store: RegionalStore, member: int = 0) -> RecordSource:
    """The region's Kafka when one is configured (as the group member
    numbered `member` in this process), else the local event spool."""
    if settings.events.kafka_bootstrap:
        return KafkaSource(settings.region, settings.events.kafka_bootstrap, settings.sinks, member)
    try:
        # A source's dead_letter takes back the records its own poll gave (SpoolDelivery); the
        # non-generic RecordSource protocol cannot say so.
        return SpoolSource(settings.region, settings.events, store)  # type: ignore[return-value]
    except SpoolInUse:
        raise ConfigError(
            f"the sinks service has no events.kafka_bootstrap, so it reads region {settings.region}'s local event "
            f"spool ({settings.events.spool_dir}), and another process holds it: run the sink in the gateway's "
            "process (`sluice serve all,sinks`), or give the region a Kafka cluster") from None


async def init(rt: Runtime) -> None:
    settings = rt.settings
    # sinks.consumers members of the region's group, each with its own store
    # object (their caches are per thread; appends are fenced in storage.py).
    # The local spool has one reader.
    count = settings.sinks.consumers if settings.events.kafka_bootstrap else 1
    sinks = []
    for member in range(count):
        store = RegionalStore(settings.sinks.data_dir, settings.region)
        source = open_source(settings, store, member)
        name = f"sluice-sink-{settings.region}" + (f"-{member}" if count > 1 else "")
        sinks.append(RegionalSink(settings.region, source, settings.sinks, store, name=name))
    for sink in sinks:
        sink.start()

    async def stop() -> None:
        def stop_all() -> None:
            for sink in sinks:
                sink.request_stop()  # all at once, then wait for each
            for sink in sinks:
                sink.stop(settings.server.drain_grace_seconds)

        await asyncio.to_thread(stop_all)

    rt.on_stop(stop)
    consumers = f" ({count} consumers)" if count > 1 else ""
    rt.announcements["sinks"] = (f"region {settings.region}: {source.description}{consumers} "
                                 f"-> {store.root}")


MODULE = Module(name="sinks", depends_on=(), init=init, sections=("sinks", "events"))
