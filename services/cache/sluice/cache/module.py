"""Cache service wiring: the response store (cache.redis_url, else the
region's Redis) and the prefix ledger (the region's Redis)."""

from __future__ import annotations

from sluice.cache.core import PrefixBook, ResponseCache
from sluice.cache.servicer import CacheServicer
from sluice.cache.v1 import cache_service_pb2
from sluice.runtime.modules import Module, Runtime
from sluice.storage.prefix_ledger import connect_ledger
from sluice.storage.response_cache import connect_store


async def init(rt: Runtime) -> None:
    store = connect_store(rt.settings)
    ledger = connect_ledger(rt.settings, "cache")
    rt.on_stop(store.close)
    rt.on_stop(ledger.close)
    rt.serve(CacheServicer(ResponseCache(store, rt.settings.cache), PrefixBook(ledger)),
             cache_service_pb2.DESCRIPTOR.services_by_name["CacheService"])


MODULE = Module(name="cache", depends_on=(), init=init, sections=("cache", "auth"))
