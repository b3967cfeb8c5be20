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
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from wavegraph.devservices.manager import ServiceManager
from wavegraph.devservices.process import free_port
from wavegraph.settings import Settings


def isolated_settings(settings: Settings, state_dir: Path, services: Iterable[str] | None = None) -> Settings:
    """A copy of ``settings`` with ``state_dir``, free ports for every service, and ``services.enabled``
    limited to ``services`` (default: unchanged). The PostgreSQL DSN is cleared so the copy is managed."""
    s = settings
    enabled = s.services.enabled if services is None else tuple(services)
    return s.model_copy(
        update={
            "services": s.services.model_copy(update={"state_dir": state_dir.absolute(), "enabled": enabled}),
            "kafka": s.kafka.model_copy(
                update={"port": free_port(s.kafka.host), "controller_port": free_port(s.kafka.host)}
            ),
            "neo4j": s.neo4j.model_copy(update={"bolt_port": free_port(s.neo4j.host)}),
            "postgres": s.postgres.model_copy(update={"port": free_port(s.postgres.host), "dsn": None}),
            "redis": s.redis.model_copy(update={"port": free_port(s.redis.host)}),
            "prometheus": s.prometheus.model_copy(update={"port": free_port(s.prometheus.host)}),
        }
    )


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
