"""``wavegraph chaos neo4j-outage|worker-kill|kafka-restart|broker-kill|rebalance|graph-failover|bad-input``.

Each prints its figures, writes ``bench/results/chaos_<name>.json`` and exits 1 if one does not hold.
The scenarios that stop a server (``neo4j-outage``, ``kafka-restart``) stop a throwaway instance on
its own port unless ``--shared`` asks for the configured one: other work on the shared services would
see the outage too. ``broker-kill`` and ``rebalance`` always run on a throwaway 3-broker cluster of
their own; ``graph-failover`` too (the graph job's consumer group on RF 3 topics). Every
scenario uses a private Redis, because the breaker state lives under one fixed key that every API reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer

from wavegraph.settings import Settings, load_settings

app = typer.Typer(
    help="Fault scenarios under load; each writes bench/results/chaos_<name>.json.", no_args_is_help=True
)

OUT = typer.Option(None, "--out", help="Where to write the JSON (default: bench/results/chaos_<name>.json).")
HEAP = typer.Option("256m", "--heap", help="JVM heap of each of the three throwaway brokers.")
SHARED = typer.Option(False, "--shared", help="Stop the configured server instead of a throwaway one.")


Scenario = Callable[[Settings], Awaitable[dict[str, Any]]]


def _run(
    settings: Settings,
    private: tuple[str, ...],
    scenario: Scenario,
    figures: tuple[str, ...],
    out: Path | None,
) -> None:
    from wavegraph.loadtest.scope import run_with_private
    from wavegraph.loadtest.summary import publish

    if not publish(run_with_private(settings, scenario, *private), figures, out):
        raise typer.Exit(1)


def _cluster(heap: str, brokers: int = 3) -> Settings:
    """The settings of a throwaway cluster of ``brokers`` brokers (RF 3 on three), each with ``heap``."""
    from wavegraph.devservices.kafka import with_brokers

    settings = with_brokers(load_settings(), brokers)
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"heap": heap})})


@app.command("neo4j-outage")
def neo4j_outage(
    seconds: float = typer.Option(60.0, "--seconds", min=1, help="How long Neo4j stays stopped."),
    rate: float = typer.Option(500.0, "--rate", min=1, help="Events/s offered over HTTP meanwhile."),
    breaker_timeout: float | None = typer.Option(
        None, "--breaker-timeout", help="Seconds the breaker stays open (default: ingest.breaker_timeout_s)."
    ),
    shared: bool = SHARED,
    out: Path | None = OUT,
) -> None:
    """Stop Neo4j under load: the breaker opens and half-opens, the API answers 429 + Retry-After while
    it is open, and after recovery every accepted edge is in Neo4j exactly once."""
    from wavegraph.devservices.manager import service
    from wavegraph.loadtest.outage import OutagePlan, run_outage

    plan = OutagePlan(outage_s=seconds, rate=rate)
    settings = load_settings()
    if breaker_timeout is not None:
        ingest = settings.ingest.model_copy(update={"breaker_timeout_s": breaker_timeout})
        settings = settings.model_copy(update={"ingest": ingest})

    async def scenario(s: Settings) -> dict[str, Any]:
        # With --shared the configured server; otherwise the throwaway one ``s`` points at.
        return await run_outage(s, service(settings if shared else s, "neo4j"), plan)

    figures = (
        "breaker_path",
        "answers_429_while_open",
        "retry_after_values",
        "unavailable_s",
        "accepted",
        "final_loss",
        "lost",
        "duplicates",
        "drain_s",
    )
    _run(settings, ("redis",) if shared else ("neo4j", "redis"), scenario, figures, out)


@app.command("worker-kill")
def worker_kill(
    events: int = typer.Option(
        100_000, "--events", min=1000, help="Edges published before the worker starts."
    ),
    kills: int = typer.Option(2, "--kills", min=1, help="How many times the worker is SIGKILLed."),
    out: Path | None = OUT,
) -> None:
    """SIGKILL `wavegraph run edges` during batch writes and restart it: 0 lost, 0 duplicates."""
    from wavegraph.loadtest.kill import KillPlan, run_worker_kill

    async def scenario(s: Settings) -> dict[str, Any]:
        return await run_worker_kill(s, KillPlan(events=events, kills=kills))

    _run(
        load_settings(),
        ("redis",),
        scenario,
        ("kills_mid_write", "replayed", "lost", "duplicates", "drain_s", "elapsed_s"),
        out,
    )


@app.command("kafka-restart")
def kafka_restart(
    down: float = typer.Option(10.0, "--down", min=0, help="Seconds the broker stays stopped."),
    rate: float = typer.Option(
        500.0, "--rate", min=1, help="Events/s offered over HTTP, and again straight to Kafka."
    ),
    shared: bool = SHARED,
    out: Path | None = OUT,
) -> None:
    """Restart the Kafka broker under load: producers resend, the processor resumes; 0 lost, 0 duplicates."""
    from wavegraph.devservices.manager import service
    from wavegraph.loadtest.broker import BrokerRestartPlan, run_broker_restart

    settings = load_settings()

    async def scenario(s: Settings) -> dict[str, Any]:
        broker = service(settings if shared else s, "kafka")
        return await run_broker_restart(s, broker, BrokerRestartPlan(rate=rate, down_s=down))

    figures = ("unavailable_s", "accepted", "final_loss", "lost", "duplicates", "drain_s")
    _run(settings, ("redis",) if shared else ("kafka", "redis"), scenario, figures, out)


@app.command("broker-kill")
def broker_kill(
    rate: float = typer.Option(500.0, "--rate", min=1, help="Keyed edge events/s offered to the topic."),
    warmup: float = typer.Option(8.0, "--warmup", min=0, help="Seconds of load before the kill."),
    recovery: float = typer.Option(
        10.0, "--recovery", min=0, help="Seconds of load after the new leader is elected."
    ),
    rejoin: bool = typer.Option(
        True, "--rejoin/--no-rejoin", help="Start the killed broker again and wait for full ISR."
    ),
    heap: str = HEAP,
    out: Path | None = OUT,
) -> None:
    """SIGKILL the leader of a partition of a throwaway 3-broker cluster (RF 3, min.insync.replicas 2)
    under acks=all load: 0 acknowledged events lost (topic and Neo4j, by content), the leader moves,
    producers and consumers continue, the lag drains."""
    from wavegraph.devservices.kafka import brokers
    from wavegraph.loadtest.broker_kill import BROKERS, BrokerKillPlan, run_broker_kill

    plan = BrokerKillPlan(rate=rate, warmup_s=warmup, recovery_s=recovery, rejoin=rejoin)
    settings = _cluster(heap, BROKERS)

    async def scenario(s: Settings) -> dict[str, Any]:
        return await run_broker_kill(s, brokers(s), plan)  # the throwaway cluster ``s`` points at

    figures = (
        "killed_broker",
        "new_leader",
        "failover_s",
        "accepted",
        "final_loss",
        "lost_in_log",
        "acked_after_kill",
        "acked_after_kill_on_partition",
        "consumed_after_kill",
        "lost",
        "duplicates",
        "drain_s",
    )
    _run(settings, ("kafka", "redis"), scenario, figures, out)


@app.command("bad-input")
def bad_input(
    events: int = typer.Option(10_000, "--events", min=100, help="Records in the stream."),
    malformed_pct: float = typer.Option(
        2.0, "--malformed-pct", min=0.1, max=50, help="Share of malformed records."
    ),
    out: Path | None = OUT,
) -> None:
    """A stream with malformed and hostile events (bad JSON, missing fields, wrong types, oversized and
    16 MiB records, unknown tenant, ints beyond int64, NUL, NaN, nested props, random unknown fields):
    all of them in the DLQ with a reason, all valid ones in Neo4j, the processor alive, the DLQ metric's
    series bounded."""
    from wavegraph.loadtest.bad_input import BadInputPlan, run_bad_input

    async def scenario(s: Settings) -> dict[str, Any]:
        return await run_bad_input(s, BadInputPlan(events=events, malformed_pct=malformed_pct))

    figures = (
        "malformed",
        "dead_letters",
        "reasons_ok",
        "valid",
        "lost",
        "duplicates",
        "unknown_tenant_edges",
        "processor_alive",
        "dlq_metric_series",
    )
    _run(load_settings(), ("redis",), scenario, figures, out)


@app.command("rebalance")
def rebalance(
    workers: int = typer.Option(3, "--workers", min=2, help="Edge workers in the group at the start."),
    rate: float = typer.Option(600.0, "--rate", min=1, help="Keyed edge events/s offered to the topic."),
    seconds: float = typer.Option(30.0, "--seconds", min=5, help="Seconds of load."),
    kill_at: float = typer.Option(8.0, "--kill-at", min=0, help="SIGKILL one worker after this many s."),
    join_at: float = typer.Option(16.0, "--join-at", min=0, help="Start another worker after this many s."),
    heap: str = HEAP,
    out: Path | None = OUT,
) -> None:
    """SIGKILL one of several edge workers under load and start another, on a throwaway 3-broker cluster
    (RF 3): 0 lost, 0 duplicates in Neo4j (content check), every revocation flushed and committed in
    time, the lag drains."""
    from wavegraph.loadtest.rebalance import RebalancePlan, run_rebalance

    plan = RebalancePlan(workers=workers, rate=rate, seconds=seconds, kill_at_s=kill_at, join_at_s=join_at)
    settings = _cluster(heap)

    async def scenario(s: Settings) -> dict[str, Any]:
        return await run_rebalance(s, plan)

    figures = ("accepted", "lost", "duplicates", "committed_end", "drain_s")
    _run(settings, ("kafka", "redis"), scenario, figures, out)


@app.command("graph-failover")
def graph_failover(
    tenants: int = typer.Option(6, "--tenants", min=2, help="Tenants, each its own random graph."),
    nodes: int = typer.Option(150, "--nodes", min=10, help="Nodes per tenant."),
    edges: int = typer.Option(600, "--edges", min=10, help="Edge events per tenant and half."),
    timeout: float = typer.Option(120.0, "--timeout", min=10, help="Seconds each phase may take."),
    heap: str = HEAP,
    out: Path | None = OUT,
) -> None:
    """SIGKILL one of two graph-job instances: its tenants' PageRank and NodeEvents go on on the other,
    equal to the single-instance result (L1 <= 1e-6), and the survivor keeps its own tenants without
    reloading them."""
    from wavegraph.loadtest.graph_failover import FailoverPlan, run_graph_failover

    plan = FailoverPlan(tenants=tenants, nodes=nodes, edges=edges, timeout_s=timeout)
    settings = _cluster(heap)

    async def scenario(s: Settings) -> dict[str, Any]:
        return await run_graph_failover(s, plan)

    figures = ("tenants", "victim_tenants", "takeover_s", "l1_max", "nodes_missing", "survivor_kept")
    _run(settings, ("kafka",), scenario, figures, out)
