"""Redis clients from a URL: one server, a Sentinel-watched primary, a
Redis Cluster, or the in-process stand-in.

- ``redis://host:port/db`` (``rediss://`` for TLS, ``unix:///path``): one server.
- ``redis+sentinel://host:port[,host:port...]/<primary name>[/db]`` (``rediss+sentinel``):
  the primary the Sentinels name, found again after a failover.
- ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster``): a Redis Cluster from
  its seed nodes; the client learns the slot map, follows MOVED and ASK redirections and
  relearns the map after a failover (redis-py's RedisCluster).
- ``memory://<name>``: a fakeredis server held in this process (one per name), the
  embedded default for `make run`: the same client API and commands, nothing to install.

Keys that one command or script touches together carry a hash tag (`{tenant}`, `{scope}`)
so they share a slot on a cluster; reads of keys that need not be atomic go through
`mget`, which splits them by slot on a cluster.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import fakeredis
import redis
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from sluice.config.base import parse_redis_url

_memory_servers: dict[str, fakeredis.FakeServer] = {}
_CLUSTER_MAX_CONNECTIONS = 1024
# Where redis-py's own code lives (to tell its internal errors from Sluice's).
_CLIENT_DIR = os.path.dirname(redis.__file__)


class StoreUnavailable(Exception):
    """A store could not answer: a refused or dropped connection, or no
    answer in time. Storage adapters raise it (`reaching`) in place of their
    client library's errors, so cores decide what an outage means without
    knowing the library."""


# What "the store is down" looks like from redis-py: no connection or no answer in time; on a
# cluster, a slot without a primary or a cluster marked down (between a primary's death and
# its replica's promotion); a write reaching a just-demoted primary (Sentinel failover).
_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ClusterDownError,
         redis.exceptions.TryAgainError, redis.exceptions.SlotNotCoveredError, redis.exceptions.ReadOnlyError)


@contextlib.contextmanager
def reaching(store: str) -> Iterator[None]:
    """Runs a store call; redis-py's connection and timeout errors leave as
    StoreUnavailable naming `store`, and so does anything raised from inside
    redis-py while a cluster's topology changes (no reachable seed node, or an
    internal error on a connection dropped mid-command, seen when a primary
    is killed under load). Other errors, bugs in Sluice, pass unchanged."""
    try:
        yield
    except _DOWN as exc:
        raise StoreUnavailable(f"{store} unavailable: {type(exc).__name__}") from exc
    except (redis.exceptions.RedisClusterException, AttributeError) as exc:
        if not _raised_in_client(exc):
            raise
        raise StoreUnavailable(f"{store} unavailable: {type(exc).__name__}") from exc


def _raised_in_client(exc: BaseException) -> bool:
    """Whether `exc` was raised by code in the redis-py package."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(_CLIENT_DIR + os.sep)


def connect(url: str, max_connections: int = 32) -> aioredis.Redis:
    """A client for `url` (one of config.base.REDIS_URL_SCHEMES, see the module's docstring). Every network
    client answers or fails within 2 s per command and keeps at most `max_connections`
    connections per server. Raises ValueError for a URL it cannot read. The Cluster and
    Sentinel clients are typed as the single-server one: they take the same commands."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        name = url.removeprefix("memory://")
        server = _memory_servers.setdefault(name, fakeredis.FakeServer())
        return fakeredis.FakeAsyncRedis(server=server)
    timeouts: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    parts = parse_redis_url(url)
    if scheme.endswith("+cluster"):
        client: Any = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parts.nodes],
            ssl=scheme.startswith("rediss"), username=parts.username, password=parts.password,
            # redis-py's cluster client cannot make a caller wait for a free connection (past
            # its cap it raises), so the cap per node is a ceiling above any burst, not a queue.
            max_connections=max(max_connections, _CLUSTER_MAX_CONNECTIONS), **timeouts,
        )
        return client
    if scheme.endswith("+sentinel"):
        sentinel = Sentinel(list(parts.nodes), sentinel_kwargs=timeouts, ssl=scheme.startswith("rediss"),
                            username=parts.username, password=parts.password, **timeouts)
        return sentinel.master_for(parts.primary, db=parts.db, max_connections=max_connections)
    # A bounded pool that makes callers wait for a free connection: the
    # default pool opens one connection per concurrent command (a burst of
    # hundreds pays hundreds of handshakes) and errors past its cap.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=2, health_check_interval=15, **timeouts,
    )
    return aioredis.Redis.from_pool(pool)


def is_cluster(client: object) -> bool:
    """Whether `client` talks to a Redis Cluster (keys of one call may live on several nodes)."""
    return isinstance(client, RedisCluster)


async def mget(client: aioredis.Redis, keys: list[str]) -> list[Any]:
    """GET of each of `keys`, in order (None where absent): one MGET on one server; on a
    cluster, one MGET per slot, sent to the slots' nodes together (not atomic, which readers
    that need no snapshot, such as caches, do not mind)."""
    if is_cluster(client):
        return await client.mget_nonatomic(keys)  # type: ignore[attr-defined]  # RedisCluster only
    return await client.mget(keys)
