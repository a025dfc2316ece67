"""`cache`: the exact response cache's store and lifetimes."""

from __future__ import annotations

from pydantic import Field, field_validator

from sluice.config.base import Section, check_redis_url


class CacheSettings(Section):
    # Response cache store: its own Redis, configured with maxmemory and an
    # LRU policy (allkeys-lru) so the memory bound evicts old answers; empty
    # = auth.redis_url (fine for make run's embedded store, not for a
    # Redis that also holds quotas, which must not be evicted).
    redis_url: str = ""
    # (any URL auth.redis_url takes)
    # Lifetime of an entry when its tenant sets none, and the longest any
    # entry gets, seconds.
    ttl_seconds: int = Field(default=3600, ge=1, le=30 * 86400)
    max_ttl_seconds: int = Field(default=7 * 86400, ge=1, le=30 * 86400)
    # Largest answer kept, bytes after compression; larger ones are served
    # and not stored.
    max_entry_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # zlib level for stored answers (1 fast .. 9 small).
    compression_level: int = Field(default=6, ge=1, le=9)
    # Deadline for one store command (a loaded event loop counts too); past
    # it the request bypasses the cache.
    store_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    # Who shares the prompt-prefix ledger (where prefixes are warm), kept on
    # the region's Redis (auth.redis_url): empty = the region.
    prefix_scope: str = Field("", pattern=r"^[a-z0-9_-]{0,63}$")

    @field_validator("redis_url")
    @classmethod
    def _v_redis(cls, value: str) -> str:
        return check_redis_url(value) if value else value
