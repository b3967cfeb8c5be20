"""Throwaway service instances: their own state dir and free ports, never touching the shared ones.

For rehearsals such as ``wavegraph migrate dry-run``::

    async with ephemeral(settings, "neo4j") as scratch:
        driver = AsyncGraphDatabase.driver(scratch.neo4j.uri)   # bolt on a free port
        ...                                                     # stopped and deleted on exit

``scratch`` is a copy of ``settings`` whose ``services.state_dir`` and the instance's ports point at the
throwaway server; the JAR cache (``services.cache_dir``) is shared, so a warm start costs only the JVM.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from wavegraph.devservices.base import ServiceError
from wavegraph.devservices.manager import ServiceManager
from wavegraph.devservices.process import free_port
from wavegraph.settings import KafkaSettings, Settings


def isolated_settings(settings: Settings, state_dir: Path, services: Iterable[str] | None = None) -> Settings:
    """A copy of ``settings`` with ``state_dir``, free ports for every service, and ``services.enabled``
    limited to ``services`` (default: unchanged). The PostgreSQL DSN is cleared so the copy is managed."""
    s = settings
    enabled = s.services.enabled if services is None else tuple(services)
    return s.model_copy(
        update={
            "services": s.services.model_copy(update={"state_dir": state_dir.absolute(), "enabled": enabled}),
            "kafka": s.kafka.model_copy(update=_free_kafka_ports(s.kafka)),
            "neo4j": s.neo4j.model_copy(update={"bolt_port": free_port(s.neo4j.host)}),
            "postgres": s.postgres.model_copy(update={"port": free_port(s.postgres.host), "dsn": None}),
            "redis": s.redis.model_copy(update={"port": free_port(s.redis.host)}),
            "prometheus": s.prometheus.model_copy(update={"port": free_port(s.prometheus.host)}),
        }
    )


def _free_kafka_ports(kafka: KafkaSettings, attempts: int = 100) -> dict[str, int]:
    """``port`` and ``controller_port`` for a throwaway cluster of ``kafka.brokers``: one free port each
    for a single broker; for a cluster, a base whose every ``base + step * i`` (and ``+ 1``) is free,
    because the brokers' ports follow the settings' scheme."""
    if kafka.brokers == 1:
        return {"port": free_port(kafka.host), "controller_port": free_port(kafka.host)}
    step = kafka.broker_port_step
    for _ in range(attempts):
        base = free_port(kafka.host)
        wanted = [base + step * i + offset for i in range(kafka.brokers) for offset in (0, 1)]
        if (
            len(set(wanted)) == len(wanted)
            and max(wanted) <= 65535
            and all(_bindable(p, kafka.host) for p in wanted)
        ):
            return {"port": base, "controller_port": base + 1}
    raise ServiceError(f"no block of free ports for {kafka.brokers} brokers after {attempts} tries")


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.asynccontextmanager
async def ephemeral(
    settings: Settings, *services: str, parent: Path | None = None, keep: bool = False
) -> AsyncIterator[Settings]:
    """Start fresh instances of ``services`` (e.g. ``"neo4j"``, ``"postgres"``) on free ports in a new
    directory under ``parent`` (default ``<state_dir>/ephemeral``); yield their settings; on exit stop
    them and delete the directory (unless ``keep``)."""
    parent = parent or settings.services.state_dir.absolute() / "ephemeral"
    parent.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="-".join(services) + "-", dir=parent))
    scratch = isolated_settings(settings, state_dir, services)
    manager = ServiceManager(scratch)
    try:
        await manager.up()
        yield scratch
    finally:
        await asyncio.shield(manager.down())
        if not keep:
            shutil.rmtree(state_dir, ignore_errors=True)


@contextlib.contextmanager
def ephemeral_sync(
    settings: Settings, *services: str, parent: Path | None = None, keep: bool = False
) -> Iterator[Settings]:
    """:func:`ephemeral` for synchronous callers (must not be called from a running event loop)."""
    cm = ephemeral(settings, *services, parent=parent, keep=keep)
    runner = asyncio.Runner()
    try:
        scratch = runner.run(cm.__aenter__())  # a failed start cleans up inside __aenter__ itself
    except BaseException:
        runner.close()
        raise
    try:
        yield scratch
    except BaseException as exc:
        if not runner.run(cm.__aexit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        runner.run(cm.__aexit__(None, None, None))
    finally:
        runner.close()
