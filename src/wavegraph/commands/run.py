"""``wavegraph run edges|audio|graph``: the stream processors, until SIGTERM/SIGINT.

Each processor serves its metrics at ``http://<metrics.host>:<metrics.PROCESSOR_port>/metrics`` (the
scrape target of ``services up --with prometheus``); port 0 serves none.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal

import typer
from rich.console import Console

from wavegraph.errors import ConfigError
from wavegraph.settings import Settings, load_settings
from wavegraph.streams.topics import ensure_topics

app = typer.Typer(help="Run a stream processor until SIGTERM/SIGINT.", no_args_is_help=True)

Processor = Literal["edges", "audio", "graph"]


@contextlib.contextmanager
def metrics_endpoint(settings: Settings, processor: Processor) -> Iterator[int]:
    """Serve the metrics registry on ``processor``'s port for the ``with`` block; yield the port (0:
    disabled). A taken port is a :class:`ConfigError` naming the setting (the CLI exits 2)."""
    from wavegraph.metrics import serve_metrics

    port = settings.metrics.port(processor)
    if port == 0:
        yield 0
        return
    host = settings.metrics.host
    try:
        server = serve_metrics(port, host)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} (metrics.{processor}_port): {exc}"
            ) from exc
        raise ConfigError(
            f"metrics port {host}:{port} (metrics.{processor}_port) is already in use by another program: "
            f"set WAVEGRAPH_METRICS__{processor.upper()}_PORT to a free port, or to 0 to serve no metrics"
        ) from None
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def serve(processor: Processor, main: Callable[[Settings, asyncio.Event], Awaitable[dict[str, int]]]) -> None:
    """Run ``main`` with a stop event wired to SIGTERM/SIGINT (only the CLI installs handlers), its
    metrics served on the processor's port meanwhile."""
    settings = load_settings()

    async def _run() -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await ensure_topics(settings.kafka)
        return await main(settings, stop)

    with metrics_endpoint(settings, processor):
        stats = asyncio.run(_run())
    Console().print(f"stopped: {stats}")


INSTANCES = typer.Option(
    1, "--instances", min=1, help="Run N processes in one consumer group (metrics on port, port + 1, …)."
)


def _instances(processor: Processor, n: int) -> bool:
    """Run ``n`` supervised instances when ``n`` > 1 (then exit with their code); False for one."""
    if n == 1:
        return False
    from wavegraph.commands.instances import run_instances

    raise typer.Exit(run_instances(processor, n))


@app.command()
def edges(instances: int = INSTANCES) -> None:
    """Consume wavegraph.edges.v1 and write the graph to Neo4j (commit after Neo4j confirmed)."""
    from wavegraph.processors.edges.pipeline import run_edges

    if not _instances("edges", instances):
        serve("edges", run_edges)


@app.command()
def audio(instances: int = INSTANCES) -> None:
    """Consume wavegraph.audio.v1, transcribe with Whisper, publish and store transcripts (commit after)."""
    from wavegraph.processors.audio.pipeline import run_audio

    if not _instances("audio", instances):
        serve("audio", run_audio)


@app.command()
def graph(instances: int = INSTANCES) -> None:
    """Keep PageRank current per batch of edges, recompute embeddings + HAA, publish wavegraph.nodes.v1
    (instances share the tenants)."""
    from wavegraph.commands.progress import terminal_progress
    from wavegraph.processors.graph_job.pipeline import run_graph

    async def with_progress(settings: Settings, stop: asyncio.Event) -> dict[str, int]:
        with terminal_progress() as progress:
            return await run_graph(settings, stop, progress=progress)

    if not _instances("graph", instances):
        serve("graph", with_progress)


def demo_command() -> None:
    """Run the pipeline on sample data against the local services and print what happened."""
    from wavegraph.commands.demo import run_demo

    run_demo(load_settings())
