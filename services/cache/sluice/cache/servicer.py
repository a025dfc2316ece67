"""gRPC face of the cache service."""

from __future__ import annotations

from sluice.cache.core import NoResponseCache
from sluice.cache.v1 import cache_service_pb2 as pb


class CacheServicer:
    def __init__(self, cache: NoResponseCache) -> None:
        self._cache = cache

    async def Lookup(self, request: pb.LookupRequest, context: object) -> pb.LookupResponse:
        found = await self._cache.lookup(request.principal, request.request)
        if found is None:
            return pb.LookupResponse(hit=False)
        return pb.LookupResponse(hit=True, events=found)
