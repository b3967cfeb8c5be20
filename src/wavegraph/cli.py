"""The ``wavegraph`` command line: services, migrate, run, produce, bench, graph, models, transcribe ...

Each command group lives in ``wavegraph.commands.<group>``; heavy libraries are imported inside the
commands so that ``wavegraph --help`` stays fast. Only this entry point installs signal handlers.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from wavegraph.errors import WavegraphError

app = typer.Typer(
    name="wavegraph",
    help="Real-time enrichment of audio and graph-edge events on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from wavegraph.commands import (
        api,
        bench,
        chaos,
        config,
        dp,
        graph,
        loadtest,
        migrate,
        models,
        produce,
        run,
        services,
    )
    from wavegraph.commands.transcribe import transcribe_command

    app.add_typer(services.app, name="services")
    app.add_typer(config.app, name="config")
    app.add_typer(migrate.app, name="migrate")
    app.add_typer(produce.app, name="produce")
    app.add_typer(run.app, name="run")
    app.add_typer(bench.app, name="bench")
    app.add_typer(models.app, name="models")
    app.add_typer(graph.app, name="graph")
    app.add_typer(loadtest.app, name="loadtest")
    app.add_typer(chaos.app, name="chaos")
    app.add_typer(dp.app, name="dp")
    app.command("demo", help="Run the pipeline on sample data against the local services.")(run.demo_command)
    app.command("transcribe", help="Transcribe a WAV file offline (no Kafka): text, segments, device, xRT.")(
        transcribe_command
    )
    app.command(
        "api", help="Serve the HTTP API (ingest, search, explain, stats, /metrics, /healthz, /docs)."
    )(api.api_command)


_register()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # chatty libraries: their INFO lines drown what the command says
        for name in ("aiokafka", "gensim", "kafka", "neo4j", "httpx", "numba", "faiss", "pywhispercpp"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # whisper.cpp's own warnings ("input is too short" for a window's last few ms) are not the user's
        logging.getLogger("wavegraph.asr.whispercpp").setLevel(logging.ERROR)


def main() -> None:
    """Console-script entry point: one red sentence for wavegraph's own errors, no traceback."""
    try:
        app()
    except WavegraphError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
