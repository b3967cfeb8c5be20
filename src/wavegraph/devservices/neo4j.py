"""Neo4j Community (embedded DBMS with Bolt) started by ``java/Neo4jLauncher.java``."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

from wavegraph.devservices import maven, process
from wavegraph.devservices.base import Service, ServiceError
from wavegraph.devservices.prereqs import require, which

LAUNCHER = Path(__file__).with_name("java") / "Neo4jLauncher.java"

# What Neo4j 5.26's own server start script passes to the JVM (memory and diagnostics aside).
JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
)


class Neo4j(Service):
    name = "neo4j"

    @property
    def host(self) -> str:
        return self.settings.neo4j.host

    @property
    def port(self) -> int:
        return self.settings.neo4j.bolt_port

    def _stale_files(self) -> list[Path]:
        data = self.state_dir / "data" / "databases"
        return [data / "store_lock", *data.glob("*/database_lock")]

    def check_prerequisites(self) -> None:
        require("java", "to run Neo4j")
        if not maven.cached(self.cache_dir, "neo4j", self.settings.neo4j.version):
            require("mvn", "to download the Neo4j JARs from Maven Central")

    def config(self) -> str:
        n = self.settings.neo4j
        address = f"{n.host}:{n.bolt_port}"
        conf = {
            "server.bolt.enabled": "true",
            "server.bolt.listen_address": address,
            "server.bolt.advertised_address": address,
            "server.bolt.tls_level": "DISABLED",
            "dbms.security.auth_enabled": "true" if n.auth else "false",
            "server.memory.pagecache.size": n.pagecache,
            "db.tx_log.rotation.retention_policy": "1 files",
            # A development server: do not linger 10 s in Bolt's graceful shutdown.
            "internal.server.bolt.connection_shutdown_wait_time": "1s",
            "internal.server.bolt.thread_pool_shutdown_wait_time": "1s",
            "internal.dbms.bolt.netty_server_shutdown_quiet_period": "0",
        }
        return "".join(f"{key}={value}\n" for key, value in conf.items())

    async def _start(self) -> str:
        n = self.settings.neo4j
        java = require("java", "to run Neo4j")
        jars = await maven.resolve(self.cache_dir, "neo4j", n.version)
        launcher = await self._compiled_launcher(jars)
        conf = self.state_dir / "neo4j.conf"
        conf.write_text(self.config())
        argv = [
            java,
            f"-Xmx{n.heap}",
            f"-Xms{n.heap}",
            *JVM_FLAGS,
            "-cp",
            f"{jars.classpath}:{launcher}" if launcher.is_dir() else jars.classpath,
            "Neo4jLauncher" if launcher.is_dir() else str(launcher),
            str(self.state_dir),
            str(conf),
        ]
        env = dict(os.environ)
        if n.auth:
            env["NEO4J_INITIAL_PASSWORD"] = n.password
        pid = process.spawn_detached(argv, self.log_file, env)
        process.write_pid(self.pid_file, pid)
        return "resolved" if jars.resolved else "cached"

    async def _compiled_launcher(self, jars: maven.Jars) -> Path:
        """A class directory with the launcher compiled once (keyed by its source hash), or the source
        file itself for a single-file source launch when ``javac`` is not installed."""
        digest = hashlib.sha256(LAUNCHER.read_bytes()).hexdigest()[:12]
        out = jars.lib.parent / f"launcher-{digest}"
        if (out / "Neo4jLauncher.class").exists():
            return out
        javac = which("javac")
        if javac is None:
            return LAUNCHER
        tmp = out.with_name(f"{out.name}.{os.getpid()}.partial")
        proc = await asyncio.create_subprocess_exec(
            javac,
            "-cp",
            jars.classpath,
            "-d",
            str(tmp),
            str(LAUNCHER),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ServiceError(f"javac failed on {LAUNCHER}:\n{output.decode(errors='replace')[-2000:]}")
        try:
            tmp.rename(out)
        except OSError:  # a concurrent start compiled it first
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    async def _request(self) -> str:
        from wavegraph.clients import neo4j_driver

        driver = neo4j_driver(self.settings.neo4j)
        try:
            records, _, _ = await driver.execute_query("RETURN 1 AS one")
            if records[0]["one"] != 1:
                raise ServiceError(f"RETURN 1 answered {records[0]['one']!r}")
            info = await driver.get_server_info()
            return f"RETURN 1 ok, {info.agent}"
        finally:
            await driver.close()
