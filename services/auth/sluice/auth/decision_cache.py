"""Recent auth decisions, so the hot path usually skips the key store.

Only successful decisions are kept, each for a short TTL: a revoked key stops
working within one TTL, and a flood of bad keys cannot fill the cache. Entries
are looked up by a SHA-256 of the full key, so no secret sits in a long-lived
structure, and the map is bounded (oldest entry out first).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from sluice.auth.v1 import principal_pb2


class DecisionCache:
    def __init__(self, ttl_s: float, max_entries: int, stale_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        # Expired entries are kept this much longer, for `get_stale` only.
        self._stale = stale_s if ttl_s > 0 else 0.0
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, principal_pb2.Principal]] = OrderedDict()

    @staticmethod
    def _slot(api_key: str) -> bytes:
        return hashlib.sha256(api_key.encode()).digest()

    def _find(self, api_key: str, grace_s: float) -> principal_pb2.Principal | None:
        if self._ttl <= 0:
            return None
        slot = self._slot(api_key)
        entry = self._entries.get(slot)
        if entry is None:
            return None
        expires, principal = entry
        now = self._clock()
        if now >= expires + self._stale:
            del self._entries[slot]
            return None
        return principal if now < expires + grace_s else None

    def get(self, api_key: str) -> principal_pb2.Principal | None:
        """A decision still within its TTL."""
        return self._find(api_key, 0.0)

    def get_stale(self, api_key: str) -> principal_pb2.Principal | None:
        """A decision expired less than the stale window ago: for when the key
        store cannot be asked."""
        return self._find(api_key, self._stale)

    def put(self, api_key: str, principal: principal_pb2.Principal) -> None:
        if self._ttl <= 0:
            return
        slot = self._slot(api_key)
        self._entries[slot] = (self._clock() + self._ttl, principal)
        self._entries.move_to_end(slot)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
