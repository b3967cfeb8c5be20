"""``wavegraph loadtest edges``: offer edges at a rate (default: 2× the sustainable one) over HTTP and Kafka.

Runs against the configured Kafka and Neo4j (its own topics, consumer group and tenant, removed
afterwards) with a private Redis for the breaker state; writes ``bench/results/loadtest_edges.json``
and exits 1 if a figure of the burst does not hold.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from wavegraph.settings import Settings, load_settings

app = typer.Typer(
    help="Load scenarios; each writes bench/results/<name>.json and prints a summary.", no_args_is_help=True
)

FIGURES = (
    "sustainable_edges_per_s",
    "offered_edges_per_s",
    "offered_edges_per_s_achieved",
    "accepted_edges_per_s",
    "rejected_pct",
    "final_loss",
    "lost",
    "duplicates",
    "p99_ms",
    "service_p99_ms",
    "max_lag",
    "drain_s",
)


class Via(StrEnum):
    http = "http"
    kafka = "kafka"
    both = "both"


def channels(via: Via, retry: bool) -> tuple[str, ...]:
    http = "http_retry" if retry else "http"
    return {Via.http: (http,), Via.kafka: ("kafka",), Via.both: (http, "kafka")}[via]


@app.command()
def edges(
    rate: float | None = typer.Option(
        None,
        "--rate",
        min=1,
        help="Events/s offered in total (default: --factor × the measured sustainable rate).",
    ),
    seconds: float = typer.Option(60.0, "--seconds", min=1, help="How long to offer."),
    via: Via = typer.Option(Via.both, "--via", help="HTTP API, straight to Kafka, or half each."),
    retry: bool = typer.Option(False, "--retry/--no-retry", help="The HTTP client honours Retry-After."),
    factor: float = typer.Option(2.0, "--factor", min=0.1, help="Multiple of the sustainable rate to offer."),
    calibrate: int = typer.Option(
        30_000, "--calibrate", min=1000, help="Edges timed to find the sustainable rate."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the JSON (default: bench/results/loadtest_edges.json)."
    ),
) -> None:
    """Offer edges to the API and/or Kafka while the edge processor writes them to Neo4j; check that
    every accepted edge is in Neo4j exactly once, count 429s, report p99 and how the lag drains."""
    from wavegraph.loadtest.burst import BurstPlan, run_burst
    from wavegraph.loadtest.scope import run_with_private
    from wavegraph.loadtest.summary import publish

    plan = BurstPlan(
        seconds=seconds, rate=rate, factor=factor, channels=channels(via, retry), calibrate_events=calibrate
    )
    settings = load_settings()

    async def scenario(s: Settings) -> dict[str, Any]:
        return await run_burst(s, plan)

    if not publish(run_with_private(settings, scenario, "redis"), FIGURES, out):
        raise typer.Exit(1)
