"""gRPC face of the cache service."""

from __future__ import annotations

from sluice.cache.core import PrefixBook, ResponseCache
from sluice.cache.v1 import cache_service_pb2 as pb


class CacheServicer:
    def __init__(self, cache: ResponseCache, prefixes: PrefixBook) -> None:
        self._cache = cache
        self._prefixes = prefixes

    async def Lookup(self, request: pb.LookupRequest, context: object) -> pb.LookupResponse:
        return await self._cache.lookup(request)

    async def Store(self, request: pb.StoreRequest, context: object) -> pb.StoreResponse:
        return await self._cache.store(request)

    async def RecordPrefix(self, request: pb.RecordPrefixRequest, context: object) -> pb.RecordPrefixResponse:
        return await self._prefixes.record(request)
