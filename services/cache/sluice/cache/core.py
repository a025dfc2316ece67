"""The exact response cache and the prompt-prefix books.

ResponseCache answers Lookup and Store: it resolves the request's mode
(header, alias, tenant), its key (`sluice.cache.key`), its lifetime, and
reads or writes the store (`sluice.storage.response_cache`). What it keeps
is the answer as delivered (events), with where it came from and under
which safety policy; the gateway decides what a hit may serve (see
sluice.gateway.pipeline). A store that is down makes every lookup a
bypass and every store a skip.

PrefixBook answers RecordPrefix: it settles a routed request's prefix
plan against the usage the upstream reported, writing the ledger
(`sluice.storage.prefix_ledger`) and counting the forecast's accuracy.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

import orjson
from google.protobuf.message import DecodeError

from sluice.cache import key as keys
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.config.cache import CacheSettings
from sluice.storage.prefix_ledger import PrefixLedger, forecast_for, observe_accuracy, settle
from sluice.storage.response_cache import (
    Address,
    ResponseStore,
    StoreUnavailable,
    namespace_of,
    resolve_mode,
)
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


def _bypass(reason: str, mode: str = "off") -> pb.LookupResponse:
    return pb.LookupResponse(status="bypass", reason=reason, mode=mode)


def _encode_key(address: Address, generations: list[int], ttl_s: int, kind: str) -> bytes:
    return orjson.dumps({"ns": address.namespace, "a": address.alias, "p": address.prompt_version,
                         "d": address.digest.hex(), "g": generations, "t": ttl_s, "c": kind})


def _decode_key(raw: bytes) -> tuple[Address, list[int], int, str]:
    """Raises ValueError for anything but a key `_encode_key` made."""
    try:
        doc = orjson.loads(raw)
        address = Address(str(doc["ns"]), str(doc["a"]), str(doc["p"]), bytes.fromhex(doc["d"]))
        generations = [int(g) for g in doc["g"]]
        return address, generations, int(doc["t"]), str(doc["c"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a cache key: {exc}") from None


class ResponseCache:
    """Lookup and Store (module doc) on one store."""

    def __init__(self, store: ResponseStore, settings: CacheSettings) -> None:
        self._store = store
        self._cfg = settings

    async def lookup(self, request: pb.LookupRequest) -> pb.LookupResponse:
        """A hit (events and provenance), a miss (with the key to store
        under when read-write) or a bypass, with the reason."""
        principal = request.principal
        try:
            doc: Any = orjson.loads(request.request.body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return _bypass("unkeyable")
        model = doc.get("model")
        requested = model if isinstance(model, str) else ""
        mode, reason = resolve_mode(principal.cache, request.mode, requested)
        if mode == "off":
            return _bypass(reason)
        if keys.server_tools(doc):
            return _bypass("server_tools", mode)
        kind = keys.category(doc, request.task)
        ttl = keys.ttl_for(principal.cache, kind, self._cfg.ttl_seconds, self._cfg.max_ttl_seconds)
        namespace = namespace_of(principal)
        try:
            digest = keys.request_digest(doc, namespace, request.model, request.catalog_version,
                                         request.request.anthropic_version, list(request.request.anthropic_beta),
                                         request.prompt_version, marked=b'"cache_control"' in request.request.body)
        except (orjson.JSONEncodeError, RecursionError):
            return _bypass("unkeyable", mode)  # nested deeper than the encoder goes
        address = Address(namespace, requested, request.prompt_version, digest)
        try:
            blob, generations = await self._store.get(address)
        except StoreUnavailable as exc:
            log.debug("response cache lookup failed: %s", exc)
            return _bypass("store_unavailable", mode)
        # The key also names the request for single-flight; only a
        # read-write miss is stored under it (the gateway's rule).
        out = pb.LookupResponse(status="miss", reason="absent", mode=mode, ttl_seconds=ttl,
                                key=_encode_key(address, generations, ttl, kind))
        if blob is None:
            return out
        entry = pb.StoredEntry()
        try:
            entry.ParseFromString(zlib.decompress(blob))
        except (zlib.error, DecodeError):
            out.reason = "unreadable"
            return out
        if list(entry.generations) != generations:
            out.reason = "invalidated"
            return out
        out.hit, out.status, out.reason = True, "hit", ""
        out.events.extend(entry.answer.events)
        out.answer.CopyFrom(entry.answer)
        del out.answer.events[:]  # sent once, in `events`
        return out

    async def store(self, request: pb.StoreRequest) -> pb.StoreResponse:
        """Keeps the answer under the key (compressed); too large an answer
        or a store that is down is a skip, with the reason."""
        try:
            address, generations, ttl, kind = _decode_key(request.key)
        except ValueError:
            return self._skipped("bad_key")
        if address.namespace != namespace_of(request.principal):
            return self._skipped("bad_key")
        answer = pb.CachedAnswer()
        answer.CopyFrom(request.answer)
        answer.ttl_seconds, answer.category = ttl, kind
        blob = zlib.compress(pb.StoredEntry(answer=answer, generations=generations).SerializeToString(),
                             self._cfg.compression_level)
        if len(blob) > self._cfg.max_entry_bytes:
            return self._skipped("too_large")
        try:
            await self._store.put(address, blob, ttl)
        except StoreUnavailable as exc:
            log.debug("response cache store failed: %s", exc)
            return self._skipped("store_unavailable")
        metrics.CACHE_STORES.labels("stored", "").inc()
        metrics.CACHE_ENTRY_BYTES.observe(len(blob))
        return pb.StoreResponse(stored=True, stored_bytes=len(blob))

    @staticmethod
    def _skipped(reason: str) -> pb.StoreResponse:
        metrics.CACHE_STORES.labels("skipped", reason).inc()
        return pb.StoreResponse(stored=False, reason=reason)


class PrefixBook:
    """RecordPrefix (module doc) on one ledger."""

    def __init__(self, ledger: PrefixLedger) -> None:
        self._ledger = ledger

    async def record(self, request: pb.RecordPrefixRequest) -> pb.RecordPrefixResponse:
        plan, usage = request.plan, request.usage
        observe_accuracy(forecast_for(plan, request.deployment, request.model), usage)
        settlement = settle(plan, request.deployment, usage, request.model)
        await self._ledger.record(request.deployment, request.model, settlement)
        return pb.RecordPrefixResponse(written=len(settlement.written), refreshed=int(settlement.refreshed is not None))
