"""Redis from Debian's ``redis-server``: daemonized, persistence off, pid file and log in the state dir."""

from __future__ import annotations

import asyncio

from wavegraph.devservices.base import Service, ServiceError
from wavegraph.devservices.prereqs import require


class Redis(Service):
    name = "redis"

    @property
    def host(self) -> str:
        return self.settings.redis.host

    @property
    def port(self) -> int:
        return self.settings.redis.port

    def _owns(self, cmdline: str) -> bool:
        # redis-server rewrites its process title to "redis-server <host>:<port>".
        return "redis-server" in cmdline and f":{self.port}" in cmdline

    def check_prerequisites(self) -> None:
        require("redis-server", "to run Redis")

    async def _start(self) -> None:
        server = require("redis-server", "to run Redis")
        argv = [
            server,
            "--daemonize", "yes",
            "--bind", self.host,
            "--port", str(self.port),
            "--pidfile", str(self.pid_file),
            "--logfile", str(self.log_file),
            "--dir", str(self.state_dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise ServiceError(f"redis-server failed to start: {out.decode(errors='replace').strip()}")

    async def _request(self) -> str:
        from redis.asyncio import Redis as Client

        client = Client(host=self.host, port=self.port, socket_timeout=5)
        try:
            pong = await client.ping()
            info = await client.info("server")
        finally:
            await client.aclose()
        if pong is not True:
            raise ServiceError(f"PING answered {pong!r}")
        return f"PONG, redis {info.get('redis_version')}"
