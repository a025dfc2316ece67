"""Redis clients from a URL: a real server, or the in-process stand-in.

``memory://<name>`` gives a fakeredis server held in this process (one per
name), which is the embedded default for `make run`: the same client API and
commands as a real Redis, with nothing to install.
"""

from __future__ import annotations

import fakeredis
import redis.asyncio as aioredis

_memory_servers: dict[str, fakeredis.FakeServer] = {}


def connect(url: str) -> aioredis.Redis:
    if url.startswith("memory://"):
        name = url.removeprefix("memory://")
        server = _memory_servers.setdefault(name, fakeredis.FakeServer())
        return fakeredis.FakeAsyncRedis(server=server)
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=15
    )
