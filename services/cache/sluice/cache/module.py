"""Cache service wiring."""

from __future__ import annotations

from sluice.cache.core import NoResponseCache
from sluice.cache.servicer import CacheServicer
from sluice.cache.v1 import cache_service_pb2
from sluice.runtime.modules import Module, Runtime


async def init(rt: Runtime) -> None:
    rt.serve(CacheServicer(NoResponseCache()), cache_service_pb2.DESCRIPTOR.services_by_name["CacheService"])


MODULE = Module(name="cache", depends_on=(), init=init)
