"""A real Redis Cluster for tests: three primaries and a replica each, six
`redis-server` processes on loopback ports, joined with `redis-cli --cluster
create`. A primary can be killed (SIGKILL) and its replica's promotion
awaited, as in a node failure."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.infra.processes import free_port, stop_process, wait_for_port

# How long a primary may be unreachable before its replica takes over, ms: short, so a
# failover test waits seconds, not the 15 s default.
NODE_TIMEOUT_MS = 1000


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a port too, and free."""
    while True:
        port = free_port()
        if port + 10000 <= 65535 and _free(port + 10000):
            return port


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class _Node:
    port: int
    proc: subprocess.Popen
    dir: str


class LocalRedisCluster:
    """`primaries` primaries with `replicas` replicas each on free ports. `url` is the
    `redis+cluster://` URL Sluice takes (every node a seed)."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        self._server = shutil.which("redis-server")
        self._cli = shutil.which("redis-cli")
        if self._server is None or self._cli is None:
            raise RuntimeError("redis-server/redis-cli not found: run `make deps` (apt-get install -y redis-server)")
        self._root = tempfile.mkdtemp(prefix="sluice-redis-cluster-")
        self.nodes: list[_Node] = []
        try:
            for _ in range(primaries * (1 + replicas)):
                self.nodes.append(self._start(_cluster_port()))
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            created = subprocess.run(
                [self._cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
                 "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}{created.stderr}")
            self.wait_healthy(30)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes if n.proc.poll() is None)

    def _start(self, port: int) -> _Node:
        folder = tempfile.mkdtemp(prefix=f"node-{port}-", dir=self._root)
        proc = subprocess.Popen(
            [self._server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"{folder}/nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             # A replica always stands for election, however long since it heard its primary.
             "--cluster-replica-validity-factor", "0",
             "--save", "", "--appendonly", "no", "--dir", folder, "--loglevel", "warning",
             "--logfile", f"{folder}/redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port, 10, alive=lambda: proc.poll() is None)
        return _Node(port, proc, folder)

    def _ask(self, port: int, *command: str) -> str:
        return subprocess.run([self._cli, "-p", str(port), *command], capture_output=True, text=True,
                              timeout=5, check=False).stdout

    def _alive(self) -> list[_Node]:
        return [n for n in self.nodes if n.proc.poll() is None]

    def primaries(self) -> dict[int, list[tuple[int, int]]]:
        """Port of each live primary -> the slot ranges it serves (as the first live node sees them)."""
        out: dict[int, list[tuple[int, int]]] = {}
        alive = {n.port for n in self._alive()}
        for line in self._ask(self._alive()[0].port, "cluster", "nodes").splitlines():
            fields = line.split()
            if len(fields) < 8 or "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            if port not in alive:
                continue  # killed, not yet seen failing
            ranges = []
            for part in fields[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated
                low, _, high = part.partition("-")
                ranges.append((int(low), int(high or low)))
            if ranges:
                out[port] = ranges
        return out

    def primary_for(self, key: str) -> int:
        """The port of the live primary serving `key`'s slot."""
        slot = int(self._ask(self._alive()[0].port, "cluster", "keyslot", key).strip())
        for port, ranges in self.primaries().items():
            if any(low <= slot <= high for low, high in ranges):
                return port
        raise LookupError(f"no live primary serves slot {slot}")

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok, the live primaries cover all 16384 slots, and
        every live replica has its primary's data (a replica that never synced cannot serve a
        failover)."""
        alive = self._alive()
        if not alive or any("cluster_state:ok" not in self._ask(n.port, "cluster", "info") for n in alive):
            return False
        for node in alive:
            replication = self._ask(node.port, "info", "replication")
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return False
        covered = sum(high - low + 1 for ranges in self.primaries().values() for low, high in ranges)
        return covered == 16384

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis Cluster not healthy after {timeout} s")
            time.sleep(0.1)

    def wait_in_sync(self, timeout: float) -> None:
        """Until every live replica has applied all its primary has written (replication is
        asynchronous: what a primary acknowledged but did not pass on dies with it)."""
        deadline = time.monotonic() + timeout
        while True:
            offsets = {n.port: self._ask(n.port, "info", "replication") for n in self._alive()}
            primaries = {p: _field(text, "master_repl_offset") for p, text in offsets.items() if "role:master" in text}
            behind = [p for p, text in offsets.items() if "role:slave" in text
                      and _field(text, "slave_repl_offset") < primaries.get(int(_field(text, "master_port")), 0)]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas {behind} still behind after {timeout} s")
            time.sleep(0.05)

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port`, as a crash or an OOM kill would."""
        for node in self.nodes:
            if node.port == port:
                node.proc.kill()
                node.proc.wait()
                return
        raise LookupError(f"no node on port {port}")

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                stop_process(node.proc, 5)
        shutil.rmtree(self._root, ignore_errors=True)


def _field(info: str, name: str) -> int:
    for line in info.splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1])
    return 0


@contextmanager
def redis_cluster() -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


class LocalRedisSentinel:
    """A primary, one replica and one Sentinel watching them (quorum 1) as `redis-server`
    processes; `url` is the `redis+sentinel://` URL Sluice takes. The primary can be killed
    and the promotion of its replica awaited."""

    NAME = "sluice-primary"

    def __init__(self) -> None:
        self._server = shutil.which("redis-server")
        self._cli = shutil.which("redis-cli")
        if self._server is None or self._cli is None:
            raise RuntimeError("redis-server/redis-cli not found: run `make deps` (apt-get install -y redis-server)")
        self._root = tempfile.mkdtemp(prefix="sluice-redis-sentinel-")
        self.procs: dict[int, subprocess.Popen] = {}
        try:
            self.primary = self._start(free_port())
            self.replica = self._start(free_port(), "--replicaof", "127.0.0.1", str(self.primary))
            self.sentinel = free_port()
            conf = f"{self._root}/sentinel.conf"
            with open(conf, "w") as out:  # Sentinel rewrites its file: it must be its own
                out.write(f"port {self.sentinel}\nbind 127.0.0.1\ndir {self._root}\n"
                          f"sentinel monitor {self.NAME} 127.0.0.1 {self.primary} 1\n"
                          f"sentinel down-after-milliseconds {self.NAME} {NODE_TIMEOUT_MS}\n"
                          f"sentinel failover-timeout {self.NAME} 5000\n")
            self.procs[self.sentinel] = subprocess.Popen(
                [self._server, conf, "--sentinel", "--logfile", f"{self._root}/sentinel.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for_port(self.sentinel, 10)
            self._wait(lambda: "master_link_status:up" in self._ask(self.replica, "info", "replication"), 20)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{self.NAME}/0"

    def _start(self, port: int, *extra: str) -> int:
        self.procs[port] = subprocess.Popen(
            [self._server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._root, "--dbfilename", f"{port}.rdb", "--loglevel", "warning",
             "--logfile", f"{self._root}/{port}.log", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.procs[port]
        wait_for_port(port, 10, alive=lambda: proc.poll() is None)
        return port

    def _ask(self, port: int, *command: str) -> str:
        return subprocess.run([self._cli, "-p", str(port), *command], capture_output=True, text=True,
                              timeout=5, check=False).stdout

    @staticmethod
    def _wait(done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {timeout} s")
            time.sleep(0.1)

    def primary_port(self) -> int:
        """The port the Sentinel names as the primary now."""
        return int(self._ask(self.sentinel, "sentinel", "get-master-addr-by-name", self.NAME).split()[1])

    def kill_primary_and_wait_for_promotion(self, timeout: float = 30) -> int:
        """SIGKILL the primary; returns the new primary's port once the Sentinel names it."""
        old = self.primary_port()
        self.procs[old].kill()
        self.procs[old].wait()
        self._wait(lambda: self.primary_port() != old, timeout)
        return self.primary_port()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                stop_process(proc, 5)
        shutil.rmtree(self._root, ignore_errors=True)
