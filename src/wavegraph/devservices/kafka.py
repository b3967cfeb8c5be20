"""Apache Kafka in KRaft mode (one combined broker + controller) from Maven Central JARs."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path

from wavegraph.devservices import maven, process
from wavegraph.devservices.base import Service, ServiceError
from wavegraph.devservices.prereqs import require

JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


class Kafka(Service):
    name = "kafka"

    @property
    def host(self) -> str:
        return self.settings.kafka.host

    @property
    def port(self) -> int:
        return self.settings.kafka.port

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def _stale_files(self) -> list[Path]:
        return [self.data_dir / ".lock"]

    def check_prerequisites(self) -> None:
        require("java", "to run Kafka")
        if not maven.cached(self.cache_dir, "kafka", self.settings.kafka.version):
            require("mvn", "to download the Kafka JARs from Maven Central")

    def server_properties(self) -> str:
        k = self.settings.kafka
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{k.host}:{k.controller_port}",
            "listeners": f"PLAINTEXT://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{k.host}:{k.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(k.partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
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

    async def _start(self) -> str:
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
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        argv = [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)]
        proc = await asyncio.create_subprocess_exec(
            *argv, "--ignore-formatted", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ServiceError(f"kafka storage format failed:\n{out.decode(errors='replace')[-2000:]}")

    async def _request(self) -> str:
        from aiokafka.client import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=self.settings.kafka.bootstrap, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            brokers = client.cluster.brokers()
            if not brokers:
                raise ServiceError("metadata lists no broker")
            controller = client.cluster.controller
            node = controller.nodeId if controller is not None else "unknown"
            return f"metadata ok, {len(brokers)} broker(s), controller node {node}"
        finally:
            await client.close()
