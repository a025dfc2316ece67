"""The life of an API key: created (its secret shown once), listed without
secrets, revoked, rotated with an overlap during which both keys work."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from sluice.auth import keys
from sluice.auth.keystore import KeyStore, StoredKey
from sluice.rpc.errors import FieldViolation, Reason, SluiceError

MAX_DESCRIPTION = 200


def _now_ms() -> int:
    return int(time.time() * 1000)


class KeyAdmin:
    def __init__(self, store: KeyStore, pepper: bytes, tenant_exists: Callable[[str], bool],
                 default_overlap_s: int, clock_ms: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._pepper = pepper
        self._tenant_exists = tenant_exists
        self._default_overlap_s = default_overlap_s
        self._clock_ms = clock_ms

    async def import_key(self, api_key: str, tenant_id: str, description: str = "") -> StoredKey:
        """Stores the hash of a full key (seed keys, and every new key)."""
        parsed = keys.parse(api_key)
        if parsed is None:
            raise ValueError("key is not of the form sk-sluice-<key id>-<secret>")
        self._check(tenant_id, description)
        salt = secrets.token_bytes(16)
        stored = StoredKey(parsed.key_id, tenant_id, salt, keys.digest(self._pepper, salt, parsed.secret),
                           description=description, created_ms=self._clock_ms())
        await self._store.put(stored)
        return stored

    async def ensure_key(self, api_key: str, tenant_id: str) -> StoredKey:
        """A configured (seed) key: stored if new; left as it is if known, so
        a revocation or rotation outlives restarts."""
        parsed = keys.parse(api_key)
        existing = await self._store.get(parsed.key_id) if parsed else None
        if existing is not None and existing.tenant_id == tenant_id:
            return existing
        return await self.import_key(api_key, tenant_id, "seed key")

    async def create(self, tenant_id: str, description: str = "") -> tuple[StoredKey, str]:
        """A new key and its full value: the only time the secret is seen."""
        api_key = keys.generate()
        return await self.import_key(api_key, tenant_id, description), api_key

    async def list(self, tenant_id: str) -> list[StoredKey]:
        self._check(tenant_id, "")
        return await self._store.list(tenant_id)

    async def revoke(self, key_id: str) -> StoredKey:
        stored = await self._get(key_id)
        if stored.revoked:
            return stored
        revoked = replace(stored, revoked_ms=self._clock_ms())
        await self._store.put(revoked)
        return revoked

    async def rotate(self, key_id: str, overlap_s: int = 0) -> tuple[StoredKey, str, StoredKey]:
        """(new key, its full value, old key as now stored). The old key works
        for `overlap_s` more seconds (0 = the configured default)."""
        if overlap_s < 0:
            raise SluiceError(Reason.INVALID_REQUEST, "overlap_seconds must not be negative",
                              field_violations=[FieldViolation("overlap_seconds", "must be >= 0")])
        old = await self._get(key_id)
        if not old.usable_at(self._clock_ms()):
            raise SluiceError(Reason.INVALID_REQUEST, f"key {key_id} is revoked or expired; create a new key instead",
                              field_violations=[FieldViolation("key_id", "revoked or expired")])
        new, api_key = await self.create(old.tenant_id, old.description)
        expires = self._clock_ms() + (overlap_s or self._default_overlap_s) * 1000
        if old.expires_ms:
            expires = min(expires, old.expires_ms)
        previous = replace(old, expires_ms=expires, replaced_by=new.key_id)
        await self._store.put(previous)
        return new, api_key, previous

    async def _get(self, key_id: str) -> StoredKey:
        stored = await self._store.get(key_id) if key_id else None
        if stored is None:
            raise SluiceError(Reason.NOT_FOUND, f"no key {key_id!r}")
        return stored

    def _check(self, tenant_id: str, description: str) -> None:
        if not self._tenant_exists(tenant_id):
            raise SluiceError(Reason.NOT_FOUND, f"no tenant {tenant_id!r}")
        if len(description) > MAX_DESCRIPTION:
            raise SluiceError(Reason.INVALID_REQUEST, "description too long", field_violations=[
                FieldViolation("description", f"at most {MAX_DESCRIPTION} characters")])
