"""Redis clients from a URL: a real server, or the in-process stand-in.

``memory://<name>`` gives a fakeredis server held in this process (one per
name), which is the embedded default for `make run`: the same client API and
commands as a real Redis, with nothing to install.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import fakeredis
import redis.asyncio as aioredis
import redis.exceptions

_memory_servers: dict[str, fakeredis.FakeServer] = {}


class StoreUnavailable(Exception):
    """A store could not answer: a refused or dropped connection, or no
    answer in time. Storage adapters raise it (`reaching`) in place of their
    client library's errors, so cores decide what an outage means without
    knowing the library."""


# What "the store is down" looks like from redis-py.
_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@contextlib.contextmanager
def reaching(store: str) -> Iterator[None]:
    """Runs a store call; redis-py's connection and timeout errors leave as
    StoreUnavailable naming `store` (other errors, bugs, pass unchanged)."""
    try:
        yield
    except _DOWN as exc:
        raise StoreUnavailable(f"{store} unavailable: {type(exc).__name__}") from exc


def connect(url: str, max_connections: int = 32) -> aioredis.Redis:
    if url.startswith("memory://"):
        name = url.removeprefix("memory://")
        server = _memory_servers.setdefault(name, fakeredis.FakeServer())
        return fakeredis.FakeAsyncRedis(server=server)
    # A bounded pool that makes callers wait for a free connection: the
    # default pool opens one connection per concurrent command (a burst of
    # hundreds pays hundreds of handshakes) and errors past its cap.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=2,
        socket_connect_timeout=2, socket_timeout=2, health_check_interval=15,
    )
    return aioredis.Redis.from_pool(pool)
