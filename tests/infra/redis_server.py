"""A real Redis server for tests: SLUICE_REDIS_URL, a container, or redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from tests.infra import docker
from tests.infra.processes import free_port, stop_process, wait_for_port


class LocalRedis:
    """A redis-server process on a free loopback port. No persistence unless
    `durable`, which logs every write (appendfsync always) so the server can
    be killed and restarted on the same port with its data."""

    def __init__(self, durable: bool = False) -> None:
        self._binary = shutil.which("redis-server")
        if self._binary is None:
            raise RuntimeError("redis-server not found: run `make deps` (apt-get install -y redis-server)")
        self._durable = durable
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="sluice-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self._durable else ["--appendonly", "no"]
        self._proc = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", self._dir, "--loglevel", "warning", "--logfile", f"{self._dir}/redis.log"],
            # Logged to a file: a pipe nobody reads would stall redis once full.
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        proc = self._proc
        wait_for_port(self.port, 10, alive=lambda: proc.poll() is None)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, 5)
        shutil.rmtree(self._dir, ignore_errors=True)


@contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("SLUICE_REDIS_URL"):
        yield os.environ["SLUICE_REDIS_URL"]
        return
    if docker.engine_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        return
    server = LocalRedis()
    try:
        yield server.url
    finally:
        server.stop()
