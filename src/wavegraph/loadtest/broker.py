"""Kafka broker restart under load: producers and the processor ride it out; nothing is lost or doubled.

The API (in this process) takes ``rate`` events/s from a client honouring ``Retry-After`` (a 503 while
the broker is away says when to come back) and the same rate goes straight to the topic from a producer
that resends what was not acknowledged. The edge processor runs in this process too. After
``warmup_s`` the broker is stopped for ``down_s`` seconds and started again (same data directory);
after ``recovery_s`` the load stops, the lag drains and every acknowledged event must be in Neo4j
exactly once. As with the outage, the caller passes the broker to restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from wavegraph.devservices.base import Service
from wavegraph.loadtest.api import api_client
from wavegraph.loadtest.http_client import LoadPlan, run_load
from wavegraph.loadtest.kafka_load import produce_at_rate
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.scope import new_scope, scope_topics
from wavegraph.loadtest.summary import graph_ok, with_checks
from wavegraph.loadtest.verify import verify_run
from wavegraph.loadtest.workers import InlineWorker
from wavegraph.report import build_report
from wavegraph.settings import Settings

KAFKA_BASE = 10**9  # the direct producer's events are numbered from here


@dataclass(frozen=True)
class BrokerRestartPlan:
    rate: float = 500.0  # per channel (HTTP and direct)
    batch_size: int = 50
    warmup_s: float = 5.0
    down_s: float = 10.0
    recovery_s: float = 10.0
    drain_timeout_s: float = 300.0
    cleanup: bool = True


async def run_broker_restart(settings: Settings, kafka: Service, plan: BrokerRestartPlan) -> dict[str, Any]:
    if (kafka.host, kafka.port) != (settings.kafka.host, settings.kafka.port):
        raise ValueError(
            f"the broker to restart listens on {kafka.port}, the settings use {settings.kafka.bootstrap}"
        )
    scope = new_scope(settings, "broker")
    wl = scope.workload
    timeline: dict[str, float] = {}
    async with scope_topics(scope):
        worker = InlineWorker(scope.settings)
        await worker.start()
        try:
            async with api_client(scope.settings) as client:
                stop = asyncio.Event()
                http_plan = LoadPlan(
                    plan.rate, 86_400, plan.batch_size, honour_retry_after=True, give_up_after_s=3600
                )
                async with asyncio.TaskGroup() as tasks:
                    http = tasks.create_task(run_load(client, scope.api_key, http_plan, wl.event, stop))
                    direct = tasks.create_task(
                        produce_at_rate(
                            scope.settings.kafka,
                            scope.topic,
                            lambda i: (None, wl.value(i)),
                            rate=plan.rate,
                            seconds=86_400,
                            first=KAFKA_BASE,
                            batch_size=plan.batch_size,
                            stop=stop,
                        )
                    )
                    try:
                        await _restart(kafka, plan, timeline, worker)
                    finally:
                        stop.set()
                    http_stats, kafka_stats = await http, await direct
                timeline["load_done"] = time.time()
            async with LagProbe(settings.kafka, scope.group, scope.topic, scope.partitions) as lag:
                drain_s = await lag.wait_drained(plan.drain_timeout_s)
        finally:
            stats = await worker.close()
    accepted = [wl.index_of(e) for e in http_stats.accepted_ids] + kafka_stats.accepted
    check = await verify_run(scope.settings.neo4j, wl, accepted, cleanup=plan.cleanup)
    rows = []
    for name, summary in (
        ("http (honours Retry-After)", http_stats.summary()),
        ("kafka producer", kafka_stats.summary()),
    ):
        keys = ("offered_events", "accepted_events", "failed_events", "retries", "p50_ms", "p99_ms")
        rows.append(
            {"channel": name, **{k: summary[k] for k in keys}, "answers_503": summary.get("answers_503", 0)}
        )
    params = {
        "rate_per_channel": plan.rate,
        "warmup_s": plan.warmup_s,
        "down_s": plan.down_s,
        "recovery_s": plan.recovery_s,
    }
    report = build_report("chaos_kafka_restart", params, rows, None)
    t0 = timeline["start"]
    report.update(
        accepted=len(accepted),
        final_loss=sum(r["offered_events"] - r["accepted_events"] for r in rows),
        lost=check.lost,
        duplicates=check.duplicates,
        graph=check.as_dict(),
        unavailable_s=round(timeline["up"] - timeline["down_begin"], 2),
        timeline_s={k: round(v - t0, 2) for k, v in timeline.items()},
        processor=stats,
        drain_s=round(drain_s, 2),
    )
    checks = {
        "final loss 0 (clients resend what was not acknowledged)": report["final_loss"] == 0,
        **graph_ok(report["graph"]),
    }
    return with_checks(report, checks)


async def _restart(
    kafka: Service, plan: BrokerRestartPlan, timeline: dict[str, float], worker: InlineWorker
) -> None:
    timeline["start"] = time.time()
    await asyncio.sleep(plan.warmup_s)
    worker.check()
    timeline["down_begin"] = time.time()
    await kafka.down()
    timeline["down"] = time.time()
    try:
        await asyncio.sleep(plan.down_s)
    finally:  # whatever happened, the broker is started again
        timeline["up_begin"] = time.time()
        await kafka.up()
        timeline["up"] = time.time()
    await asyncio.sleep(plan.recovery_s)
    worker.check()
