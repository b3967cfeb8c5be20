"""``wavegraph run edges|audio|graph``: the stream processors, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import typer
from rich.console import Console

from wavegraph.settings import Settings, load_settings
from wavegraph.streams.topics import ensure_topics

app = typer.Typer(help="Run a stream processor until SIGTERM/SIGINT.", no_args_is_help=True)


def serve(main: Callable[[Settings, asyncio.Event], Awaitable[dict[str, int]]]) -> None:
    """Run ``main`` with a stop event wired to SIGTERM/SIGINT (only the CLI installs handlers)."""
    settings = load_settings()

    async def _run() -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await ensure_topics(settings.kafka)
        return await main(settings, stop)

    stats = asyncio.run(_run())
    Console().print(f"stopped: {stats}")


@app.command()
def edges() -> None:
    """Consume wavegraph.edges.v1 and write the graph to Neo4j (commit after Neo4j confirmed)."""
    from wavegraph.processors.edges.pipeline import run_edges

    serve(run_edges)


@app.command()
def audio() -> None:
    """Consume wavegraph.audio.v1, transcribe with Whisper, publish and store transcripts (commit after)."""
    from wavegraph.processors.audio.pipeline import run_audio

    serve(run_audio)


@app.command()
def graph() -> None:
    """Keep PageRank current per batch of edges, recompute embeddings + HAA, publish wavegraph.nodes.v1."""
    from wavegraph.commands.progress import terminal_progress
    from wavegraph.processors.graph_job.pipeline import run_graph

    async def with_progress(settings: Settings, stop: asyncio.Event) -> dict[str, int]:
        with terminal_progress() as progress:
            return await run_graph(settings, stop, progress=progress)

    serve(with_progress)


def demo_command() -> None:
    """Run the pipeline on sample data against the local services and print what happened."""
    from wavegraph.commands.demo import run_demo

    run_demo(load_settings())
