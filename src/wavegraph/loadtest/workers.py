"""The edge processor under test, in this process (a task) or in its own (``wavegraph run edges``).

In-process is what the breaker scenarios use (the sink's transitions are observable here); a
subprocess is what a deployment runs, and what can be SIGKILLed. Both run the real
:func:`wavegraph.processors.edges.pipeline.run_edges` with the scenario's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from wavegraph.loadtest.scope import settings_env
from wavegraph.processors.edges.pipeline import run_edges
from wavegraph.settings import Settings

STOP_TIMEOUT_S = 30.0


class InlineWorker:
    """``run_edges`` as a task of the running loop; ``stats`` holds its counters once stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.started = asyncio.Event()
        self.stats: dict[str, int] = {}
        self._task: asyncio.Task[dict[str, int]] | None = None

    async def start(self, timeout_s: float = 60.0) -> None:
        self._task = asyncio.create_task(run_edges(self.settings, self.stop, self.started))
        waiter = asyncio.create_task(self.started.wait())
        try:
            done, _ = await asyncio.wait(
                {self._task, waiter}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        if self._task in done:
            self._task.result()  # raises what made it end
            raise RuntimeError("the edge processor stopped as soon as it started")
        if not done:
            raise TimeoutError(f"the edge processor did not start within {timeout_s:.0f}s")

    @property
    def alive(self) -> bool:
        """The processor task is running (not ended, by a crash or otherwise)."""
        return self._task is not None and not self._task.done()

    def check(self) -> None:
        """Raise whatever ended the processor early."""
        if self._task is not None and self._task.done():
            self._task.result()
            raise RuntimeError("the edge processor stopped on its own")

    async def close(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, int]:
        task, self._task = self._task, None
        if task is None:
            return self.stats
        self.stop.set()
        try:
            self.stats = await asyncio.wait_for(task, timeout_s)
        except TimeoutError:
            raise TimeoutError(f"the edge processor did not stop within {timeout_s:.0f}s") from None
        return self.stats


@contextlib.asynccontextmanager
async def inline_worker(settings: Settings) -> AsyncIterator[InlineWorker]:
    worker = InlineWorker(settings)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.close()


class WorkerProcess:
    """``python -m wavegraph.cli run PROCESSOR`` (``edges`` by default) with the scenario's settings
    passed as ``WAVEGRAPH_`` variables.

    Output goes to ``log``; ``kill()`` is a SIGKILL (no flush, no commit), ``stop()`` a SIGTERM.
    """

    def __init__(self, settings: Settings, log: Path, processor: str = "edges") -> None:
        self.settings = settings
        self.log = log
        self.processor = processor
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            raise RuntimeError("the worker is already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAVEGRAPH_")}
        env.update(settings_env(self.settings))
        # several workers share this host: none may hold the fixed metrics port (the scenario reads
        # what it measures from Kafka and Neo4j, not from /metrics)
        env[f"WAVEGRAPH_METRICS__{self.processor.upper()}_PORT"] = "0"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wavegraph.cli",
                "run",
                self.processor,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        """The worker process is running."""
        return self.proc is not None and self.proc.returncode is None

    def check(self) -> None:
        """Raise if the worker exited on its own (its log's tail in the message)."""
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(f"the worker exited with {self.proc.returncode}:\n{self.tail()}")

    async def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush or commit."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; return the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@contextlib.contextmanager
def worker_log(log_dir: Path | None, name: str) -> Iterator[Path]:
    """Where a worker subprocess writes its output: ``log_dir/<name>.log`` (kept), or a temporary
    directory removed afterwards (a failing worker's last lines are in the error anyway)."""
    if log_dir is not None:
        yield log_dir / f"{name}.log"
        return
    with tempfile.TemporaryDirectory(prefix="wavegraph-worker-") as tmp:
        yield Path(tmp) / f"{name}.log"


@contextlib.asynccontextmanager
async def worker_process(settings: Settings, log: Path) -> AsyncIterator[WorkerProcess]:
    worker = WorkerProcess(settings, log)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()
