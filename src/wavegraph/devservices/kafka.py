"""Apache Kafka in KRaft mode from Maven Central JARs: one broker, or a cluster of ``kafka.brokers``.

Every broker is a combined broker + controller, and every one is a voter of the controller quorum
(three brokers: a 3-voter quorum, which survives the loss of one). Broker ``i`` (0-based) is its own
:class:`Kafka` service: ``kafka`` for the first (the single broker's state dir, pid and port, unchanged),
``kafka-2``, ``kafka-3`` … for the others, on the ports of :attr:`KafkaSettings.broker_ports`. A cluster
of N > 1 brokers keeps its log in ``data-<N>brokers/`` (a single broker in ``data/``), so switching
between sizes never reuses a log formatted for another quorum. All brokers of one cluster share a
cluster id derived from the state dir and N, so they can be formatted independently and in parallel.

``up`` writes the size it started to ``<state_dir>/kafka/brokers``; ``status`` and ``down`` act on that
running cluster (:func:`running_brokers`) even when the settings ask for another size.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import time
import uuid
from pathlib import Path

from pydantic import ValidationError

from wavegraph.devservices import maven, process
from wavegraph.devservices.base import POLL_S, REQUEST_TIMEOUT_S, Service, ServiceError, UpReport
from wavegraph.devservices.prereqs import require
from wavegraph.errors import ConfigError
from wavegraph.settings import KafkaSettings, Settings

LAYOUT_FILE = "brokers"  # in the first broker's state dir: the size of the running cluster

JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


def broker_name(index: int) -> str:
    """``kafka`` for the first broker, ``kafka-<i + 1>`` for the others."""
    return "kafka" if index == 0 else f"kafka-{index + 1}"


class Kafka(Service):
    """Broker ``index`` (0-based, node id ``index + 1``) of a cluster of ``brokers`` (default
    ``kafka.brokers``)."""

    name = "kafka"

    def __init__(self, settings: Settings, index: int = 0, brokers: int | None = None) -> None:
        super().__init__(settings)
        self.brokers = settings.kafka.brokers if brokers is None else brokers
        if not 0 <= index < self.brokers:
            raise ValueError(f"broker index {index} outside a cluster of {self.brokers}")
        self.index = index
        self.name = broker_name(index)  # type: ignore[misc]  # one service per broker

    @property
    def node_id(self) -> int:
        return self.index + 1

    @property
    def host(self) -> str:
        return self.settings.kafka.host

    @property
    def port(self) -> int:
        return self.settings.kafka.port + self.settings.kafka.broker_port_step * self.index

    @property
    def controller_port(self) -> int:
        return self.settings.kafka.controller_port + self.settings.kafka.broker_port_step * self.index

    @property
    def data_dir(self) -> Path:
        return self.state_dir / ("data" if self.brokers == 1 else f"data-{self.brokers}brokers")

    @property
    def layout_file(self) -> Path:
        return self.settings.services.state_dir.absolute() / "kafka" / LAYOUT_FILE

    def _owns(self, cmdline: str) -> bool:
        # ``…/kafka`` is a prefix of ``…/kafka-2``: match the directory with its separator.
        return f"{self.state_dir}/" in cmdline

    def _stale_files(self) -> list[Path]:
        return [self.data_dir / ".lock"]

    def voters(self) -> str:
        k = self.settings.kafka
        step = k.broker_port_step
        return ",".join(f"{i + 1}@{k.host}:{k.controller_port + step * i}" for i in range(self.brokers))

    def cluster_id(self) -> str:
        """Random for a single broker; for a cluster, the same for every broker of this state dir and
        size (a name-based UUID), so each broker formats its own log without a coordinator."""
        root = self.settings.services.state_dir.absolute()
        for attempt in itertools.count():
            if self.brokers == 1:
                raw = uuid.uuid4()
            else:
                raw = uuid.uuid5(uuid.NAMESPACE_URL, f"wavegraph-kafka:{root}:{self.brokers}:{attempt}")
            text = base64.urlsafe_b64encode(raw.bytes).decode().rstrip("=")
            # One id in 64 starts with "-", which a command line reads as an option (Kafka's own
            # Uuid.randomUuid skips those too): draw again.
            if not text.startswith("-"):
                return text
        raise AssertionError("unreachable")

    def check_prerequisites(self) -> None:
        require("java", "to run Kafka")
        if not maven.cached(self.cache_dir, "kafka", self.settings.kafka.version):
            require("mvn", "to download the Kafka JARs from Maven Central")

    def server_properties(self) -> str:
        k = self.settings.kafka
        rf, isr = k.replication(self.brokers)
        internal_rf = min(3, self.brokers)  # the offsets and transaction logs: as replicated as possible
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters(),
            "listeners": f"PLAINTEXT://{k.host}:{self.port},CONTROLLER://{k.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{k.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(k.partitions),
            "default.replication.factor": str(rf),
            "min.insync.replicas": str(isr),
            "offsets.topic.replication.factor": str(internal_rf),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(internal_rf),
            "transaction.state.log.min.isr": str(min(2, internal_rf)),
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "message.max.bytes": str(k.max_message_bytes),
            "replica.fetch.max.bytes": str(k.max_message_bytes),
            "socket.request.max.bytes": str(max(104_857_600, 2 * k.max_message_bytes)),
            "log.retention.ms": str(k.retention_ms),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def log4j_properties(self) -> str:
        log = self.state_dir / "server.log"
        controller = self.state_dir / "controller.log"
        return "\n".join(
            [
                "log4j.rootLogger=INFO, server",
                "log4j.appender.server=org.apache.log4j.RollingFileAppender",
                f"log4j.appender.server.File={log}",
                "log4j.appender.server.MaxFileSize=20MB",
                "log4j.appender.server.MaxBackupIndex=2",
                "log4j.appender.server.layout=org.apache.log4j.PatternLayout",
                "log4j.appender.server.layout.ConversionPattern=[%d] %p %m (%c)%n",
                "log4j.appender.controller=org.apache.log4j.RollingFileAppender",
                f"log4j.appender.controller.File={controller}",
                "log4j.appender.controller.MaxFileSize=20MB",
                "log4j.appender.controller.MaxBackupIndex=1",
                "log4j.appender.controller.layout=org.apache.log4j.PatternLayout",
                "log4j.appender.controller.layout.ConversionPattern=[%d] %p %m (%c)%n",
                "log4j.logger.org.apache.kafka.controller=INFO, controller",
                "log4j.additivity.org.apache.kafka.controller=false",
                "log4j.logger.kafka.controller=INFO, controller",
                "log4j.additivity.kafka.controller=false",
                "log4j.logger.state.change.logger=WARN, controller",
                "log4j.additivity.state.change.logger=false",
                "log4j.logger.kafka.request.logger=WARN",
                "log4j.logger.org.apache.kafka.raft=WARN",
                "",
            ]
        )

    def _java(self, classpath: str, log4j: Path) -> list[str]:
        java = require("java", "to run Kafka")
        heap = self.settings.kafka.heap
        return [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}",
            *JVM_FLAGS,
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={self.state_dir}",
            "-cp",
            classpath,
        ]

    async def _spawn(self) -> str:
        jars = await maven.resolve(self.cache_dir, "kafka", self.settings.kafka.version)
        props = self.state_dir / "server.properties"
        log4j = self.state_dir / "log4j.properties"
        props.write_text(self.server_properties())
        log4j.write_text(self.log4j_properties())
        java = self._java(jars.classpath, log4j)
        if not (self.data_dir / "meta.properties").exists():
            await self._format(java, props)
        pid = process.spawn_detached([*java, "kafka.Kafka", str(props)], self.log_file)
        process.write_pid(self.pid_file, pid)
        return "resolved" if jars.resolved else "cached"

    async def _format(self, java: list[str], props: Path) -> None:
        argv = [
            *java,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={self.cluster_id()}",
            "-c",
            str(props),
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, "--ignore-formatted", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ServiceError(f"kafka storage format failed:\n{out.decode(errors='replace')[-2000:]}")

    async def up(self) -> UpReport:
        """Refuse (before touching anything) when a cluster of another size runs from this state dir:
        its first broker would otherwise look like this one, unhealthy, and be killed after the
        start timeout."""
        running = running_brokers(self.settings)
        if running is not None and running != self.brokers:
            raise ServiceError(
                f"a {running}-broker Kafka is running from {self.settings.services.state_dir}: stop it "
                f"(`wavegraph services down --only kafka`) before starting {self.brokers} broker(s)"
            )
        return await super().up()

    async def _start(self) -> str:
        self.layout_file.parent.mkdir(parents=True, exist_ok=True)
        self.layout_file.write_text(f"{self.brokers}\n")  # what status and down will act on
        return await self._spawn()

    async def _request(self) -> str:
        """Metadata from this broker itself, which must list itself; in a cluster the detail names the
        registered brokers and any that are missing (fenced or down)."""
        nodes, controller = await self._metadata()
        if self.node_id not in nodes:
            raise ServiceError(f"metadata does not list this broker (node {self.node_id}): {nodes}")
        if self.brokers == 1:
            return f"metadata ok, {len(nodes)} broker(s), controller node {controller}"
        # (a KRaft broker names a random broker as "controller": not shown)
        missing = [n for n in range(1, self.brokers + 1) if n not in nodes]
        note = f", missing {missing}" if missing else ""
        return f"node {self.node_id}: metadata ok, brokers {nodes}{note}"

    async def _metadata(self) -> tuple[list[int], int | str]:
        """(registered broker ids, controller id) as this broker's metadata lists them."""
        from aiokafka.client import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=f"{self.host}:{self.port}", request_timeout_ms=5000)
        try:
            await client.bootstrap()
            controller = client.cluster.controller
            return sorted(b.nodeId for b in client.cluster.brokers()), (
                controller.nodeId if controller is not None else "unknown"
            )
        finally:
            await client.close()

    async def _wait_ready(self, deadline: float) -> None:
        """Ready = this broker answers and every broker of the cluster is registered (unfenced)."""
        await super()._wait_ready(deadline)
        nodes: list[int] = []
        while True:
            with contextlib.suppress(Exception):  # a broker that just answered may blink; ask again
                nodes, _ = await asyncio.wait_for(self._metadata(), REQUEST_TIMEOUT_S)
            if len(nodes) >= self.brokers:
                return
            if time.perf_counter() > deadline:
                others = [broker_name(i) for i in range(self.brokers) if i + 1 not in nodes]
                raise ServiceError(
                    f"{self.name} answers, but after {self.settings.services.start_timeout_s:.0f}s the "
                    f"cluster lists brokers {nodes} of {self.brokers}: see {', '.join(others)} "
                    f"(logs under {self.settings.services.state_dir.absolute()})"
                )
            await asyncio.sleep(POLL_S)


def recorded_brokers(settings: Settings) -> int | None:
    """The cluster size the last ``up`` wrote under this state dir, if any."""
    path = settings.services.state_dir.absolute() / "kafka" / LAYOUT_FILE
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


def running_brokers(settings: Settings) -> int | None:
    """The size of the cluster running from this state dir (any of its brokers alive), else None."""
    size = recorded_brokers(settings)
    if size is None:
        size = 1  # a broker started before the size was recorded is a single broker
    if any(Kafka(settings, i, size).pid() is not None for i in range(size)):
        return size
    return None


def brokers(settings: Settings, size: int | None = None) -> list[Kafka]:
    """Every broker of a cluster of ``size`` (default ``kafka.brokers``), broker 1 first."""
    n = settings.kafka.brokers if size is None else size
    return [Kafka(settings, i, n) for i in range(n)]


def with_brokers(settings: Settings, size: int) -> Settings:
    """``settings`` with ``kafka.brokers = size``, validated again (the port scheme must stay apart)."""
    data = {**settings.kafka.model_dump(), "brokers": size}
    try:
        kafka = KafkaSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"kafka.brokers {size}: {exc.errors()[0]['msg']}") from None
    return settings.model_copy(update={"kafka": kafka})
