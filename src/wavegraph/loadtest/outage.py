"""Neo4j outage under load: the breaker opens, the API pushes back with 429, nothing accepted is lost.

The edge processor runs in this process (so its breaker transitions are recorded) next to the API;
a client honouring ``Retry-After`` offers ``rate`` events/s over HTTP and a prober sends one event per
``probe_interval_s`` without retrying, recording every answer. After ``warmup_s`` the Neo4j server is
stopped for ``outage_s`` seconds, then started again (its start-up adds to the outage); after
``recovery_s`` the load stops, the lag drains and every accepted event must be in Neo4j exactly once.

The caller passes the :class:`~wavegraph.devservices.base.Service` to stop: the scenario never picks
one itself, so the shared Neo4j is only stopped when the caller asks for it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from wavegraph.devservices.base import Service
from wavegraph.loadtest.api import Prober, api_client
from wavegraph.loadtest.breaker import BreakerRecorder
from wavegraph.loadtest.http_client import LoadPlan, LoadStats, run_load
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.scope import new_scope, scope_topics
from wavegraph.loadtest.summary import graph_ok, with_checks
from wavegraph.loadtest.verify import verify_run
from wavegraph.loadtest.workers import InlineWorker
from wavegraph.report import build_report
from wavegraph.settings import Settings
from wavegraph.sinks import breaker_state

PROBE_BASE = 10**9  # probe events are numbered from here, apart from the load's
OPEN_SLACK_S = 1.0  # the API reads the breaker from Redis through a short cache; allow for the delay


@dataclass(frozen=True)
class OutagePlan:
    outage_s: float = 60.0
    rate: float = 500.0
    batch_size: int = 50
    warmup_s: float = 5.0
    recovery_s: float = 10.0
    probe_interval_s: float = 0.2
    drain_timeout_s: float = 300.0
    cleanup: bool = True


async def run_outage(settings: Settings, neo4j: Service, plan: OutagePlan) -> dict[str, Any]:
    """Stop and restart ``neo4j`` (which must be the server ``settings.neo4j`` points at) under load."""
    if (neo4j.host, neo4j.port) != (settings.neo4j.host, settings.neo4j.bolt_port):
        raise ValueError(
            f"the service to stop listens on {neo4j.port}, the settings use {settings.neo4j.uri}"
        )
    scope = new_scope(settings, "outage")
    wl = scope.workload
    timeline: dict[str, float] = {}
    async with (
        scope_topics(scope),
        LagProbe(settings.kafka, scope.group, scope.topic, scope.partitions) as lag,
    ):
        with BreakerRecorder() as recorder:
            worker = InlineWorker(scope.settings)
            await worker.start()
            try:
                async with api_client(scope.settings) as client:
                    prober = Prober(client, scope.api_key, wl, PROBE_BASE, plan.probe_interval_s)
                    stop = asyncio.Event()
                    load = LoadPlan(
                        plan.rate, 86_400, plan.batch_size, honour_retry_after=True, give_up_after_s=3600
                    )
                    async with asyncio.TaskGroup() as tasks:
                        loading = tasks.create_task(run_load(client, scope.api_key, load, wl.event, stop))
                        tasks.create_task(prober.run(stop))
                        try:
                            await _outage(neo4j, plan, timeline, worker)
                        finally:
                            stop.set()
                        stats = await loading
                    timeline["load_done"] = time.time()
                drain_s = await lag.wait_drained(plan.drain_timeout_s)
            finally:
                await worker.close()
    accepted = [wl.index_of(e) for e in stats.accepted_ids] + prober.accepted
    check = await verify_run(scope.settings.neo4j, wl, accepted, cleanup=plan.cleanup)
    return _report(
        plan, scope.settings, stats, prober, recorder, timeline, check.as_dict(), drain_s, lag.max_lag
    )


async def _outage(neo4j: Service, plan: OutagePlan, timeline: dict[str, float], worker: InlineWorker) -> None:
    timeline["start"] = time.time()
    await asyncio.sleep(plan.warmup_s)
    worker.check()
    timeline["down_begin"] = time.time()
    await neo4j.down()
    timeline["down"] = time.time()
    try:
        await asyncio.sleep(plan.outage_s)
        worker.check()
    finally:  # whatever happened, the server is started again
        timeline["up_begin"] = time.time()
        await neo4j.up()
        timeline["up"] = time.time()
    await asyncio.sleep(plan.recovery_s)
    worker.check()


def _report(
    plan: OutagePlan,
    settings: Settings,
    stats: LoadStats,
    prober: Prober,
    recorder: BreakerRecorder,
    timeline: dict[str, float],
    check: dict[str, Any],
    drain_s: float,
    max_lag: int,
) -> dict[str, Any]:
    opened = recorder.open_intervals()

    def while_open(at: float) -> bool:
        return any(lo <= at <= hi + OPEN_SLACK_S for lo, hi in opened)

    answers = prober.answers
    breaker_429 = [a for a in answers if a.status == 429 and a.error == "breaker_open"]
    rows = [
        {
            "phase": phase,
            "probes": len(sel),
            "accepted_202": sum(a.status == 202 for a in sel),
            "rejected_429": sum(a.status == 429 for a in sel),
            "other": sum(a.status not in (202, 429) for a in sel),
        }
        for phase, sel in _phases(answers, timeline).items()
    ]
    load = stats.summary()
    rows.append(
        {
            "phase": "load (honours Retry-After)",
            **{
                k: load[k]
                for k in (
                    "offered_events",
                    "accepted_events",
                    "answers_429",
                    "answers_503",
                    "retries",
                    "p50_ms",
                    "p99_ms",
                )
            },
        }
    )
    params = {
        "outage_s": plan.outage_s,
        "rate": plan.rate,
        "batch_size": plan.batch_size,
        "warmup_s": plan.warmup_s,
        "recovery_s": plan.recovery_s,
        "breaker_fail_max": settings.ingest.breaker_fail_max,
        "breaker_timeout_s": settings.ingest.breaker_timeout_s,
        "neo4j": settings.neo4j.uri,
    }
    report = build_report("chaos_neo4j_outage", params, rows, None)
    t0 = timeline["start"]
    report.update(
        breaker_path=recorder.path,
        breaker_transitions=[[round(t.at - t0, 2), t.before, t.after] for t in recorder.transitions],
        breaker_transitions_counted=recorder.counted(),
        breaker_final=recorder.path[-1] if recorder.path else breaker_state.CLOSED,
        answers_429_breaker_open=len(breaker_429),
        answers_429_while_open=sum(while_open(a.at) for a in breaker_429),
        retry_after_values=sorted({int(a.retry_after) for a in breaker_429 if a.retry_after is not None}),
        unavailable_s=round(timeline["up"] - timeline["down_begin"], 2),
        timeline_s={k: round(v - t0, 2) for k, v in timeline.items()},
        offered=load["offered_events"],
        accepted=load["accepted_events"] + len(prober.accepted),
        final_loss=load["offered_events"] - load["accepted_events"],
        lost=check["lost"],
        duplicates=check["duplicates"],
        graph=check,
        max_lag=max_lag,
        drain_s=round(drain_s, 2),
    )
    checks = {
        "breaker_state went 0 → 1 → 2 → 0": _went_0_1_2_0(recorder.path),
        "429 with Retry-After while OPEN": bool(breaker_429)
        and report["answers_429_while_open"] == len(breaker_429)
        and all(a.retry_after is not None and int(a.retry_after) >= 1 for a in breaker_429),
        "final loss 0 with a client honouring Retry-After": report["final_loss"] == 0,
        **graph_ok(check),
    }
    return with_checks(report, checks)


def _went_0_1_2_0(path: list[int]) -> bool:
    """Opened from closed, half-opened, and closed from half-open at the end; only legal steps between."""
    legal = {(0, 1), (1, 2), (2, 1), (2, 0)}
    return path[:2] == [0, 1] and path[-2:] == [2, 0] and all(step in legal for step in pairwise(path))


def _phases(answers: list[Any], timeline: dict[str, float]) -> dict[str, list[Any]]:
    bounds = [
        ("before", -float("inf"), timeline["down_begin"]),
        ("neo4j down", timeline["down_begin"], timeline["up"]),
        ("after", timeline["up"], float("inf")),
    ]
    return {name: [a for a in answers if lo <= a.at < hi] for name, lo, hi in bounds}
