"""Throwaway instances for dry-runs, tests and benches: :func:`wavegraph.devservices.ephemeral.ephemeral`
in a directory of our own, with one more try when a start fails.

A fresh Neo4j is sometimes reported as "exited while starting" (empty log) although its JVM is running;
``ephemeral`` then cannot stop it (the service no longer recognises its pid) and deletes its directory,
leaving the JVM behind. So each attempt gets its own parent directory, and after a failed start every
process whose command line names that directory is stopped (by pid) before the next attempt.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from wavegraph.devservices import process
from wavegraph.devservices.base import ServiceError
from wavegraph.devservices.ephemeral import ephemeral
from wavegraph.settings import Settings

STOP_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def scratch(settings: Settings, *services: str, attempts: int = 2) -> AsyncIterator[Settings]:
    """Fresh ``services`` on free ports in their own directory; stopped and deleted on exit."""
    root = settings.services.state_dir.absolute() / "ephemeral"
    for attempt in range(1, attempts + 1):
        parent = root / f"migrations-{os.getpid()}-{secrets.token_hex(4)}"
        cm = ephemeral(settings, *services, parent=parent)
        try:
            local = await cm.__aenter__()  # on failure ephemeral() has run its own clean-up
        except ServiceError:
            stop_processes_under(parent)
            shutil.rmtree(parent, ignore_errors=True)
            if attempt == attempts:
                raise
            continue
        break
    try:
        yield local
    except BaseException as exc:
        if not await cm.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await cm.__aexit__(None, None, None)
    finally:
        stop_processes_under(parent)
        shutil.rmtree(parent, ignore_errors=True)


def stop_processes_under(directory: Path) -> list[int]:
    """SIGTERM (SIGKILL after a deadline) every process whose command line names ``directory``."""
    needle = str(directory)
    stopped = []
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    for pid in pids:
        if pid != os.getpid() and needle in process.cmdline(pid):
            process.terminate(pid, signal.SIGTERM, STOP_TIMEOUT_S)
            stopped.append(pid)
    return stopped
