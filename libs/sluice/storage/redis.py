"""Redis clients from a URL: a real server, or the in-process stand-in.

``memory://<name>`` gives a fakeredis server held in this process (one per
name), which is the embedded default for `make run`: the same client API and
commands as a real Redis, with nothing to install.
"""

from __future__ import annotations

import fakeredis
import redis.asyncio as aioredis

_memory_servers: dict[str, fakeredis.FakeServer] = {}


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
