"""A real Apache Kafka broker for tests, in KRaft mode (broker + controller).

Jars come from Maven Central through tests/infra/kafka/pom.xml and are cached
in .cache/kafka/<version>/lib (git-ignored), so only the first run downloads.
Java 17 runs `kafka.Kafka` directly; no Docker, no ZooKeeper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.infra import docker
from tests.infra.processes import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
KAFKA_VERSION = "3.9.1"
CACHE = ROOT / ".cache" / "kafka" / KAFKA_VERSION

_LOG4J = """log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


def ensure_jars() -> Path:
    """Downloads the broker's jars once; returns the lib folder."""
    lib = CACHE / "lib"
    marker = CACHE / ".complete"
    if marker.exists():
        return lib
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise RuntimeError("Kafka needs java (17) and mvn: run `make deps`")
    tmp = CACHE.with_name(CACHE.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={tmp / 'lib'}", "-DincludeScope=runtime", f"-Dkafka.version={KAFKA_VERSION}"],
        check=True,
    )
    shutil.rmtree(CACHE, ignore_errors=True)
    tmp.rename(CACHE)
    marker.touch()
    return lib


class LocalKafka:
    """One KRaft node on free loopback ports, its data in a temp folder.
    `halt()` stops the broker and keeps its data; `start()` brings it back on
    the same ports (for outage tests); `stop()` ends it and removes the data."""

    def __init__(self) -> None:
        lib = ensure_jars()
        self.port, self._controller_port = free_port(), free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="sluice-kafka-"))
        (self._dir / "log4j.properties").write_text(_LOG4J)
        config = self._dir / "server.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self._controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self._controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={self._dir / 'data'}",
            "num.partitions=3",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
        ]) + "\n")
        self._java = ["java", "-Xms256m", "-Xmx512m",
                      f"-Dlog4j.configuration=file:{self._dir / 'log4j.properties'}", "-cp", f"{lib}/*"]
        self._config = config
        cluster_id = str(uuid.uuid4()).replace("-", "")[:22]
        subprocess.run([*self._java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
                       check=True, stdout=subprocess.DEVNULL)
        self._log = open(self._dir / "broker.log", "ab")  # noqa: SIM115 - closed in stop()
        self._proc: subprocess.Popen | None = None
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        self._proc = subprocess.Popen([*self._java, "kafka.Kafka", str(self._config)],
                                      stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, 60, alive=lambda: self._proc is not None and self._proc.poll() is None)
        except Exception:
            self.stop()
            raise

    def halt(self) -> None:
        """Stops the broker process; its data stays for `start()`."""
        if self._proc is not None:
            stop_process(self._proc, 15)
            self._proc = None

    def stop(self) -> None:
        self.halt()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class GivenKafka:
    """A broker someone else runs (SLUICE_KAFKA_BOOTSTRAP): usable, not stoppable."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap


@contextmanager
def kafka_brokers(count: int) -> Iterator[list]:
    """`count` independent clusters (one per region). With SLUICE_KAFKA_BOOTSTRAP
    set, every region shares that cluster (topics are per region anyway);
    otherwise each is a container (Docker present) or a local KRaft node."""
    if os.environ.get("SLUICE_KAFKA_BOOTSTRAP"):
        yield [GivenKafka(os.environ["SLUICE_KAFKA_BOOTSTRAP"]) for _ in range(count)]
        return
    if docker.engine_available():
        from testcontainers.kafka import KafkaContainer

        containers = []
        try:
            for _ in range(count):
                containers.append(KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft().start())
            yield [GivenKafka(c.get_bootstrap_server()) for c in containers]
        finally:
            for container in containers:
                container.stop()
        return
    brokers: list[LocalKafka] = []
    try:
        for _ in range(count):
            brokers.append(LocalKafka())
        yield brokers
    finally:
        for broker in brokers:
            broker.stop()


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """One broker's bootstrap address, from the same choices as kafka_brokers."""
    with kafka_brokers(1) as (broker,):
        yield broker.bootstrap


def create_topics(bootstrap: str, names: list[str], partitions: int = 3) -> None:
    """Creates topics that do not exist yet (a deployment's setup step)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    try:
        for name in names:
            try:
                admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
