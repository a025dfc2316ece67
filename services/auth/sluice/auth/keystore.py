"""Where hashed keys live: one Redis hash per key (sluice:auth:key:<key id>)
and a set of key ids per tenant (sluice:auth:tenant-keys:<tenant id>)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Protocol, cast

import redis.asyncio as aioredis

from sluice.storage.redis import is_cluster, reaching


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    tenant_id: str
    salt: bytes
    digest: bytes
    description: str = ""
    # Unix milliseconds; 0 = not set.
    created_ms: int = 0
    revoked_ms: int = 0
    # A rotated key stops working here.
    expires_ms: int = 0
    replaced_by: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_ms > 0

    def usable_at(self, now_ms: int) -> bool:
        return not self.revoked and not (self.expires_ms and now_ms >= self.expires_ms)


class KeyStore(Protocol):
    """Where keys live. Every method raises sluice.storage.redis.StoreUnavailable
    when the store cannot answer."""

    async def get(self, key_id: str) -> StoredKey | None: ...
    async def put(self, key: StoredKey) -> None: ...
    async def list(self, tenant_id: str) -> list[StoredKey]: ...


_INT_FIELDS = ("created_ms", "revoked_ms", "expires_ms")


class RedisKeyStore:
    """Keys in Redis (or the in-process stand-in for memory:// URLs)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    @staticmethod
    def _name(key_id: str) -> str:
        return f"sluice:auth:key:{key_id}"

    @staticmethod
    def _index(tenant_id: str) -> str:
        return f"sluice:auth:tenant-keys:{tenant_id}"

    @staticmethod
    def _decode(key_id: str, fields: dict[bytes, bytes]) -> StoredKey:
        return StoredKey(
            key_id=key_id,
            tenant_id=fields[b"tenant"].decode(),
            salt=fields[b"salt"],
            digest=fields[b"digest"],
            description=fields.get(b"description", b"").decode(),
            replaced_by=fields.get(b"replaced_by", b"").decode(),
            **{f: int(fields.get(f.encode(), b"0")) for f in _INT_FIELDS},
        )

    async def get(self, key_id: str) -> StoredKey | None:
        with reaching("key store"):
            fields = await self._redis.hgetall(self._name(key_id))
        # The client is made without decode_responses: replies are bytes.
        return self._decode(key_id, cast(dict[bytes, bytes], fields)) if fields else None

    async def put(self, key: StoredKey) -> None:
        with reaching("key store"):
            await self._put(key)

    async def _put(self, key: StoredKey) -> None:
        # The key's record and its tenant's index live in different slots on a Redis Cluster
        # (a key is found by its id alone), so there the two writes are one pipeline but not one
        # transaction: the record first, so an index entry never names a missing record for
        # long; `list` skips one whose record is absent.
        async with self._redis.pipeline(transaction=not is_cluster(self._redis)) as tx:
            tx.hset(self._name(key.key_id), mapping={
                "tenant": key.tenant_id, "salt": key.salt, "digest": key.digest,
                "description": key.description, "replaced_by": key.replaced_by,
                **{f: getattr(key, f) for f in _INT_FIELDS},
            })
            tx.sadd(self._index(key.tenant_id), key.key_id)
            await tx.execute()

    async def list(self, tenant_id: str) -> list[StoredKey]:
        with reaching("key store"):
            return await self._list(tenant_id)

    async def _list(self, tenant_id: str) -> builtins.list[StoredKey]:  # `list` here is the method above
        members = cast(set[bytes], await self._redis.smembers(self._index(tenant_id)))  # bytes: as above
        key_ids = sorted(k.decode() for k in members)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.hgetall(self._name(key_id))
            found = await pipe.execute()
        keys = [self._decode(key_id, fields) for key_id, fields in zip(key_ids, found, strict=True) if fields]
        return sorted(keys, key=lambda k: (k.created_ms, k.key_id))
