"""Where hashed keys live. One Redis hash per key: sluice:auth:key:<key id>."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    tenant_id: str
    salt: bytes
    digest: bytes
    revoked: bool = False


class KeyStore(Protocol):
    async def get(self, key_id: str) -> StoredKey | None: ...
    async def put(self, key: StoredKey) -> None: ...


class RedisKeyStore:
    """Keys in Redis (or the in-process stand-in for memory:// URLs)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    @staticmethod
    def _name(key_id: str) -> str:
        return f"sluice:auth:key:{key_id}"

    async def get(self, key_id: str) -> StoredKey | None:
        fields = await self._redis.hgetall(self._name(key_id))
        if not fields:
            return None
        return StoredKey(
            key_id=key_id,
            tenant_id=fields[b"tenant"].decode(),
            salt=fields[b"salt"],
            digest=fields[b"digest"],
            revoked=fields.get(b"revoked") == b"1",
        )

    async def put(self, key: StoredKey) -> None:
        await self._redis.hset(
            self._name(key.key_id),
            mapping={
                "tenant": key.tenant_id,
                "salt": key.salt,
                "digest": key.digest,
                "revoked": "1" if key.revoked else "0",
            },
        )
