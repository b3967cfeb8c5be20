"""``wavegraph services up | down | status``: real local Kafka, Neo4j, PostgreSQL and Redis, no Docker.

``up --with prometheus`` also starts Debian's Prometheus scraping the API and the processors;
``down`` and ``status`` then cover it too (``--only prometheus`` acts on it alone). ``up --brokers 3``
(or ``kafka.brokers: 3``) starts a 3-broker KRaft cluster; every broker is one row (``kafka``,
``kafka-2``, ``kafka-3``), and ``down``/``status`` act on the cluster that runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Start, check and stop the local Kafka, Neo4j, PostgreSQL+pgvector and Redis (no Docker).",
    no_args_is_help=True,
)

Only = Annotated[
    str | None,
    typer.Option(
        "--only",
        help="Comma-separated subset of kafka,neo4j,postgres,redis,prometheus (default: all enabled, "
        "plus any other one running).",
    ),
]
With = Annotated[
    str | None,
    typer.Option("--with", help="Comma-separated optional services to start too (prometheus)."),
]


def _names(only: str | None) -> list[str] | None:
    if only is None:
        return None
    return [name.strip() for name in only.split(",") if name.strip()]


Brokers = Annotated[
    int | None,
    typer.Option(
        "--brokers",
        min=1,
        max=9,
        help="Kafka brokers to start (default: kafka.brokers); broker i listens on "
        "kafka.port + kafka.broker_port_step * i.",
    ),
]


@app.command()
def up(only: Only = None, with_: With = None, brokers: Brokers = None) -> None:
    """Start every service that does not already answer, in parallel, and wait until each answers."""
    from wavegraph.devservices.kafka import with_brokers
    from wavegraph.devservices.manager import ServiceManager
    from wavegraph.settings import load_settings

    settings = load_settings()
    if brokers is not None:
        settings = with_brokers(settings, brokers)
    manager = ServiceManager(settings)
    names = manager.names(_names(only), _names(with_) or ())
    shown = [s.name for s in manager.services(names)]
    console = Console()
    start = time.perf_counter()
    with console.status(f"starting {', '.join(shown)} ..."):
        reports = asyncio.run(manager.up(names))
    table = Table(title="wavegraph services up")
    for column in ("service", "action", "seconds", "pid", "port", "jars"):
        table.add_column(column, justify="right" if column in ("seconds", "pid", "port") else "left")
    for r in reports:
        jars = {"resolved": "downloaded (mvn)", "cached": "cached"}.get(r.jars or "", "-")
        action = "[green]started[/]" if r.started else "already running"
        table.add_row(r.name, action, f"{r.elapsed_s:.1f}", str(r.pid or "-"), str(r.port), jars)
    console.print(table)
    if any(r.jars == "resolved" for r in reports):
        kind = "cold start: JARs resolved with mvn"
    elif any(r.started for r in reports):
        kind = "warm start: JARs from the cache"
    else:
        kind = "nothing to start"
    console.print(f"all up in {time.perf_counter() - start:.1f} s ({kind})")


@app.command()
def down(only: Only = None) -> None:
    """Stop the services by pid (SIGTERM, SIGKILL after 30 s) and remove stale pid/lock files."""
    from wavegraph.devservices.manager import ServiceManager
    from wavegraph.settings import load_settings

    reports = asyncio.run(ServiceManager(load_settings()).down(_names(only)))
    console = Console()
    for r in reports:
        if not r.was_running:
            console.print(f"{r.name}: not running (stale files cleaned)")
        else:
            how = "killed after the deadline" if r.killed else "stopped"
            console.print(f"{r.name}: {how} in {r.elapsed_s:.1f} s")


@app.command()
def status(
    only: Only = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per service.")] = False,
) -> None:
    """Ask each service a real question; exit 0 only when every one answers."""
    from wavegraph.devservices.manager import ServiceManager
    from wavegraph.settings import load_settings

    health = asyncio.run(ServiceManager(load_settings()).status(_names(only)))
    if as_json:
        typer.echo(json.dumps({h.name: h.as_dict() for h in health}, indent=2))
    else:
        table = Table(title="wavegraph services")
        for column in ("service", "ok", "pid", "port", "latency ms", "detail"):
            table.add_column(column)
        for h in health:
            table.add_row(
                h.name,
                "[green]yes[/]" if h.ok else "[red]no[/]",
                str(h.pid or "-"),
                str(h.port),
                f"{h.latency_ms:.0f}" if h.latency_ms is not None else "-",
                h.detail,
            )
        Console().print(table)
    if not all(h.ok for h in health):
        raise typer.Exit(code=1)
