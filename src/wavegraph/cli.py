"""The ``wavegraph`` command line: services, migrate, run, produce, bench, graph, models, transcribe ...

Each command group lives in ``wavegraph.commands.<group>``; heavy libraries are imported inside the
commands so that ``wavegraph --help`` stays fast. Only this entry point installs signal handlers.

Output stays quiet (:func:`configure_logging`): wavegraph's own loggers at INFO, the libraries'
(:data:`LIBRARY_LOGGERS`) at WARNING, and expected start-up conditions of Kafka (a fresh broker's
group coordinator, partition leaders of topics just created) one line each instead of one per retry.
``-v`` logs everything at DEBUG, unfiltered.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import ClassVar

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
        grafana,
        graph,
        loadtest,
        migrate,
        models,
        produce,
        run,
        services,
    )
    from wavegraph.commands.replay import replay_command
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
    app.add_typer(grafana.app, name="grafana")
    app.command(
        "replay", help="Rebuild derived stores from the retained topics and compare content checksums."
    )(replay_command)
    app.command("demo", help="Run the pipeline on sample data against the local services.")(run.demo_command)
    app.command("transcribe", help="Transcribe a WAV file offline (no Kafka): text, segments, device, xRT.")(
        transcribe_command
    )
    app.command(
        "api", help="Serve the HTTP API (ingest, search, explain, stats, /metrics, /healthz, /docs)."
    )(api.api_command)


_register()


# Libraries whose INFO lines would drown what a command says (children follow: "neo4j" covers
# "neo4j.io", "neo4j.notifications" ...). Neo4j's notifications are also turned off at the driver
# (wavegraph.clients.neo4j_driver), so a query on a label or type not created yet logs nothing at all.
LIBRARY_LOGGERS = (
    "aiokafka",
    "kafka",
    "neo4j",
    "asyncio",
    "asyncpg",
    "redis",
    "urllib3",
    "httpx",
    "httpcore",
    "niquests",
    "grafana_client",
    "faiss",
    "numba",
    "gensim",
    "pywhispercpp",
    "sentence_transformers",
    "transformers",
    "huggingface_hub",
    "onnxruntime",
    "filelock",
    "matplotlib",
    "PIL",
)


class ExpectedKafkaStartup(logging.Filter):
    """One INFO line for each expected Kafka start-up condition, instead of an ERROR/WARNING per retry.

    On a fresh broker the first consumer-group join waits until Kafka created ``__consumer_offsets``:
    aiokafka logs ``GroupCoordinatorNotAvailableError`` and "Marking the coordinator dead" at every retry;
    right after topics are created a producer logs ``NotLeaderForPartitionError`` until leaders are
    elected. Both resolve by themselves. The first record of a burst is replaced by a one-line
    explanation; the records that follow within ``quiet_s`` of the previous one are dropped, so a later
    episode (a broker restart) is reported again, once.
    """

    CONDITIONS: ClassVar[dict[str, tuple[tuple[str, ...], str]]] = {
        "coordinator": (
            (
                "CoordinatorNotAvailable",
                "Marking the coordinator dead",
                "NotCoordinator",
                "CoordinatorLoadInProgress",
            ),
            "Kafka's group coordinator is not available yet (a fresh broker creates "
            "__consumer_offsets on the first group join): retrying",
        ),
        "leader": (
            ("NotLeaderForPartition", "LeaderNotAvailable"),
            "Kafka partition leaders are not elected yet (topics just created, or a broker "
            "restarting): retrying",
        ),
    }

    def __init__(self, quiet_s: float = 30.0) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for kind, (markers, explanation) in self.CONDITIONS.items():
            if any(marker in message for marker in markers):
                now = time.monotonic()
                last, self._last[kind] = self._last.get(kind), now
                if last is not None and now - last < self.quiet_s:
                    return False
                record.msg, record.args = explanation, None
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.exc_info = record.exc_text = None
                return True
        return True


# the loggers (by module) on which aiokafka reports the conditions above
_KAFKA_STARTUP_LOGGERS = ("aiokafka.consumer.group_coordinator", "aiokafka.producer.sender")


def configure_logging(verbose: bool) -> None:
    """wavegraph at INFO (``verbose``: everything at DEBUG); libraries at WARNING; Kafka's expected
    start-up conditions one line each (see :class:`ExpectedKafkaStartup`). Safe to call twice."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("wavegraph").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    # whisper.cpp's own warnings ("input is too short" for a window's last few ms) are not the user's
    logging.getLogger("wavegraph.asr.whispercpp").setLevel(logging.NOTSET if verbose else logging.ERROR)
    for name in _KAFKA_STARTUP_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, ExpectedKafkaStartup)]:
            logger.removeFilter(old)
        if not verbose:
            logger.addFilter(ExpectedKafkaStartup())


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    configure_logging(verbose)


def main() -> None:
    """Console-script entry point: one red sentence for wavegraph's own errors, no traceback."""
    try:
        app()
    except WavegraphError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
