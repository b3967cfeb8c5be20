"""The life cycle every local service shares: up (idempotent), health (a real request), down.

A concrete service says how to start itself (:meth:`Service._start`), how to ask it a real question
(:meth:`Service._request`) and which files a crash leaves behind; this class does the rest: a per-service
``flock`` so concurrent ``up``/``down`` calls never race, a pid file whose process is checked for
identity, readiness polling with the log's tail in the error, SIGTERM then SIGKILL on ``down``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from wavegraph.devservices import process
from wavegraph.errors import WavegraphError
from wavegraph.settings import Settings

STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0
POLL_S = 0.25


class ServiceError(WavegraphError):
    """A local service could not be started or stopped; the message names its log file."""


@dataclass(frozen=True)
class Health:
    """The answer to one real request (``ok``), with the service's pid and port."""

    name: str
    ok: bool
    pid: int | None
    port: int
    detail: str
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UpReport:
    """What ``up`` did for one service: started it or found it healthy, and how long that took."""

    name: str
    started: bool
    elapsed_s: float
    pid: int | None
    port: int
    jars: str | None = None
    """``"resolved"`` when mvn downloaded/copied the JARs in this run, ``"cached"`` when reused."""


@dataclass(frozen=True)
class DownReport:
    name: str
    was_running: bool
    killed: bool
    elapsed_s: float


class Service(ABC):
    """One local server under ``<state_dir>/<name>/`` with a pid file and a log file there."""

    name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- layout ---------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.settings.services.state_dir.absolute() / self.name

    @property
    def cache_dir(self) -> Path:
        return self.settings.services.cache_dir.absolute()

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def managed(self) -> bool:
        """False when the settings point at an external server that wavegraph must not start or stop."""
        return True

    # -- what each service defines ----------------------------------------------------------------
    @abstractmethod
    async def _start(self) -> str | None:
        """Start the server detached and write its pid file; return the JAR cache state, if any."""

    @abstractmethod
    async def _request(self) -> str:
        """One real request; return a short description of the answer, raise on failure."""

    def check_prerequisites(self) -> None:
        """Raise :class:`~wavegraph.errors.MissingPrerequisite` if a program needed to start is missing."""
        return None

    def _owns(self, cmdline: str) -> bool:
        """Whether a process with this command line is this service instance."""
        return str(self.state_dir) in cmdline

    def _stale_files(self) -> list[Path]:
        """Files a crash leaves behind that would stop the next start (removed only when dead)."""
        return []

    # -- shared behaviour -------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of this service's running process, or None."""
        pid = process.read_pid(self.pid_file)
        if pid is None or not process.pid_alive(pid) or not self._owns(process.cmdline(pid)):
            return None
        return pid

    async def health(self) -> Health:
        pid = self.pid()
        if not process.port_open(self.host, self.port):
            detail = "not running" if pid is None else f"process {pid} is up, port not open yet"
            return Health(self.name, False, pid, self.port, detail)
        start = time.perf_counter()
        try:
            detail = await asyncio.wait_for(self._request(), REQUEST_TIMEOUT_S)
        except Exception as exc:  # every failure is a "not healthy" answer, shown to the user
            return Health(self.name, False, pid, self.port, f"{type(exc).__name__}: {exc}".strip())
        latency_ms = round((time.perf_counter() - start) * 1000, 1)
        return Health(self.name, True, pid, self.port, detail, latency_ms)

    async def up(self) -> UpReport:
        """Start the service unless it already answers; wait until it answers a real request."""
        start = time.perf_counter()
        async with self._lock():
            health = await self.health()
            if health.ok:
                return UpReport(self.name, False, time.perf_counter() - start, health.pid, self.port)
            if not self.managed:
                raise ServiceError(
                    f"{self.name}: the configured external server does not answer: {health.detail}"
                )
            jars: str | None = None
            if self.pid() is None:
                if process.port_open(self.host, self.port):
                    raise ServiceError(
                        f"{self.name}: port {self.host}:{self.port} is taken by a program that is not "
                        f"wavegraph's {self.name} (state in {self.state_dir}); stop it or change the port"
                    )
                self.check_prerequisites()
                self._remove_stale()
                self.state_dir.mkdir(parents=True, exist_ok=True)
                jars = await self._start()
            await self._wait_ready(start + self.settings.services.start_timeout_s)
            return UpReport(self.name, True, time.perf_counter() - start, self.pid(), self.port, jars)

    async def down(self) -> DownReport:
        """Stop the service by pid (``stop_signal``, SIGKILL after a deadline) and clean stale files."""
        start = time.perf_counter()
        if not self.managed:
            return DownReport(self.name, False, False, 0.0)
        async with self._lock():
            pid = self.pid()
            killed = False
            if pid is not None:
                killed = await asyncio.to_thread(process.terminate, pid, self.stop_signal, STOP_TIMEOUT_S)
                process.kill_group(pid)
            else:
                recorded = process.read_pid(self.pid_file)
                if recorded is not None and not process.pid_alive(recorded):
                    # The leader crashed: its session may still hold children (PostgreSQL backends).
                    process.kill_group(recorded)
            self._remove_stale()
            return DownReport(self.name, pid is not None, killed, time.perf_counter() - start)

    async def _wait_ready(self, deadline: float) -> None:
        health = await self.health()
        while not health.ok:
            if time.perf_counter() > deadline:
                await asyncio.to_thread(self._kill_after_failed_start)
                raise ServiceError(
                    f"{self.name} did not answer within {self.settings.services.start_timeout_s:.0f}s "
                    f"({health.detail}); last lines of {self.log_file}:\n{process.tail(self.log_file)}"
                )
            # Only a dead process counts as "exited": while a JVM starts (or re-execs itself) its
            # /proc cmdline can briefly be unreadable, which made pid() miss a live server.
            recorded = process.read_pid(self.pid_file)
            if recorded is not None and not process.pid_alive(recorded):
                raise ServiceError(
                    f"{self.name} exited while starting; last lines of {self.log_file}:\n"
                    f"{process.tail(self.log_file)}"
                )
            await asyncio.sleep(POLL_S)
            health = await self.health()

    def _kill_after_failed_start(self) -> None:
        pid = self.pid()
        if pid is not None:
            process.terminate(pid, signal.SIGKILL, 5)
            process.kill_group(pid)
        self._remove_stale()

    def _remove_stale(self) -> None:
        for path in [self.pid_file, *self._stale_files()]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @contextlib.asynccontextmanager
    async def _lock(self) -> AsyncIterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / ".lifecycle.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
