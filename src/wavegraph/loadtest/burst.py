"""The 2× burst: measure the sustainable rate, offer a multiple of it, check nothing accepted is lost.

1. Calibrate (unless a rate is given): pre-fill the run's topic with ``calibrate_events`` edges, start
   the edge processor (``wavegraph run edges`` in its own process, as deployed) and time the drain from
   its first commit to zero lag: that is the sustainable rate, edges/s into Neo4j.
2. Offer ``factor ×`` that rate for ``seconds``, split evenly over the channels: ``http`` (the API in
   this process, no retries: every 429 is final), ``http_retry`` (a client honouring ``Retry-After``),
   ``kafka`` (straight to the topic). Kafka absorbs what Neo4j cannot take yet, so lag builds up.
3. Wait for the lag to drain, stop the processor, and check that every accepted event is in Neo4j
   exactly once with its own content.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wavegraph.loadtest.api import api_client
from wavegraph.loadtest.http_client import LoadPlan, run_load
from wavegraph.loadtest.kafka_load import produce_at_rate
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.scope import Scope, new_scope, scope_topics
from wavegraph.loadtest.summary import graph_ok, with_checks
from wavegraph.loadtest.verify import verify_run
from wavegraph.loadtest.workers import WorkerProcess, worker_log
from wavegraph.report import build_report
from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values

CHANNELS = ("http", "http_retry", "kafka")


@dataclass(frozen=True)
class BurstPlan:
    seconds: float = 60.0
    rate: float | None = None  # events/s offered in total; None: factor × the measured sustainable rate
    factor: float = 2.0
    channels: tuple[str, ...] = ("http", "kafka")
    calibrate_events: int = 30_000
    batch_size: int = 100
    drain_timeout_s: float = 600.0
    cleanup: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.channels) - set(CHANNELS)
        if not self.channels or unknown:
            raise ValueError(f"channels must be a non-empty subset of {CHANNELS}, got {self.channels}")


async def run_burst(settings: Settings, plan: BurstPlan, log_dir: Path | None = None) -> dict[str, Any]:
    """Run the scenario on ``settings``' services; return its report (see the module docstring).
    The worker's output is kept in ``log_dir`` if given."""
    scope = new_scope(settings, "burst")
    with worker_log(log_dir, f"worker-{scope.run}") as log:
        return await _burst(settings, plan, scope, WorkerProcess(scope.settings, log))


async def _burst(settings: Settings, plan: BurstPlan, scope: Scope, worker: WorkerProcess) -> dict[str, Any]:
    async with (
        scope_topics(scope),
        LagProbe(settings.kafka, scope.group, scope.topic, scope.partitions) as lag,
    ):
        try:
            calibrated = plan.calibrate_events if plan.rate is None else 0
            if calibrated:
                await publish_values(
                    settings.kafka, scope.topic, map(scope.workload.value, range(calibrated))
                )
            await worker.start()
            sustainable = await _calibrate(lag, worker, calibrated) if calibrated else None
            rate = plan.rate if plan.rate is not None else plan.factor * (sustainable or 0.0)
            channels = await _offer(scope, plan, rate, first=calibrated, lag=lag, worker=worker)
            drain_s = await _drain(lag, worker, plan.drain_timeout_s)
        finally:
            await worker.stop()
    accepted = list(range(calibrated))
    for stats in channels.values():
        accepted.extend(stats.pop("accepted_seqs"))
    check = await verify_run(scope.settings.neo4j, scope.workload, accepted, cleanup=plan.cleanup)
    return _report(plan, scope, sustainable, rate, channels, check.as_dict(), lag, drain_s)


async def _calibrate(lag: LagProbe, worker: WorkerProcess, events: int, timeout_s: float = 600.0) -> float:
    """Edges/s from the processor's first commit until it committed all ``events``."""
    deadline = time.monotonic() + timeout_s
    first: tuple[float, int] | None = None
    while True:
        worker.check()
        committed = await lag.committed()
        now = time.monotonic()
        if committed and first is None:
            first = (now, committed)
        if committed >= events and first is not None:
            elapsed = now - first[0]
            if elapsed <= 0:
                raise RuntimeError("calibration too short to time: raise calibrate_events")
            return (events - first[1]) / elapsed
        if now > deadline:
            raise TimeoutError(f"calibration: {committed} of {events} committed after {timeout_s:.0f}s")
        await asyncio.sleep(0.05)


async def _offer(
    scope: Scope, plan: BurstPlan, rate: float, *, first: int, lag: LagProbe, worker: WorkerProcess
) -> dict[str, dict[str, Any]]:
    per = rate / len(plan.channels)
    span = math.ceil(per * plan.seconds) + plan.batch_size
    wl = scope.workload
    results: dict[str, dict[str, Any]] = {}
    stop_sampling = asyncio.Event()
    async with api_client(scope.settings) as client:

        async def http(name: str, base: int) -> None:
            load = LoadPlan(per, plan.seconds, plan.batch_size, honour_retry_after=name == "http_retry")
            stats = await run_load(client, scope.api_key, load, lambda i: wl.event(base + i))
            results[name] = {**stats.summary(), "accepted_seqs": [wl.index_of(e) for e in stats.accepted_ids]}

        async def kafka(base: int) -> None:
            stats = await produce_at_rate(
                scope.settings.kafka,
                scope.topic,
                lambda i: (None, wl.value(i)),
                rate=per,
                seconds=plan.seconds,
                first=base,
                batch_size=plan.batch_size,
            )
            results["kafka"] = {**stats.summary(), "accepted_seqs": stats.accepted}

        async with asyncio.TaskGroup() as tasks:
            sampler = tasks.create_task(lag.record(stop_sampling))
            offers = [
                tasks.create_task(
                    kafka(first + k * span) if name == "kafka" else http(name, first + k * span)
                )
                for k, name in enumerate(plan.channels)
            ]
            await asyncio.gather(*offers)
            stop_sampling.set()
            await sampler
    worker.check()
    for name, stats in results.items():
        stats["offered_per_s"] = round(per, 1)
        stats["channel"] = name
    return {name: results[name] for name in plan.channels}


async def _drain(lag: LagProbe, worker: WorkerProcess, timeout_s: float) -> float | None:
    """Seconds until the lag was 0, or None if it was not within ``timeout_s``."""
    started = time.monotonic()
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(lag.record(stop))
        try:
            while await lag.lag() > 0:
                worker.check()
                if time.monotonic() - started > timeout_s:
                    return None
                await asyncio.sleep(0.25)
        finally:
            stop.set()
    drained = time.monotonic() - started
    await lag.sample()  # the timeline ends with the drained state
    return drained


def _report(
    plan: BurstPlan,
    scope: Scope,
    sustainable: float | None,
    rate: float,
    channels: dict[str, dict[str, Any]],
    check: dict[str, Any],
    lag: LagProbe,
    drain_s: float | None,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    if sustainable is not None:
        rows.append(
            {"channel": "calibration", "edges": plan.calibrate_events, "edges_per_s": round(sustainable, 1)}
        )
    for name, stats in channels.items():
        keys = ("offered_events", "accepted_events", "rejected_events", "failed_events", "retries")
        row = {"channel": name, "offered_per_s": stats["offered_per_s"], **{k: stats[k] for k in keys}}
        row.update(
            rejected_pct=round(100 * stats["rejected_ratio"], 4),
            answers_429=stats.get("answers_429", 0),
            p50_ms=stats["p50_ms"],
            p99_ms=stats["p99_ms"],
            service_p99_ms=stats["service_p99_ms"],
            max_start_lag_ms=stats["max_start_lag_ms"],
            elapsed_s=stats["elapsed_s"],
            accepted_per_s=stats["accepted_per_s"],
        )
        rows.append(row)
    accepted_per_s = sum(s["accepted_per_s"] for s in channels.values())
    # An open-loop client that cannot keep up starts its batches late; the last one by about the
    # largest start lag, so this is the rate actually offered.
    late_s = max((s["max_start_lag_ms"] or 0.0) / 1000 for s in channels.values())
    achieved = sum(s["offered_events"] for s in channels.values()) / (plan.seconds + late_s)
    ratio = round(accepted_per_s / sustainable, 3) if sustainable else None
    params = {
        "seconds": plan.seconds,
        "rate": round(rate, 1),
        "factor": plan.factor if plan.rate is None else None,
        "channels": list(plan.channels),
        "batch_size": plan.batch_size,
        "calibrate_events": plan.calibrate_events if plan.rate is None else 0,
        "topic_partitions": scope.partitions,
        "neo4j": scope.settings.neo4j.uri,
    }
    report = build_report("loadtest_edges", params, rows, ratio)
    http = [s for n, s in channels.items() if n == "http"]
    report.update(
        sustainable_edges_per_s=round(sustainable, 1) if sustainable is not None else None,
        offered_edges_per_s=round(rate, 1),
        offered_edges_per_s_achieved=round(achieved, 1),
        accepted_edges_per_s=round(accepted_per_s, 1),
        rejected_pct=round(100 * http[0]["rejected_ratio"], 4) if http else None,
        final_loss=sum(
            s["offered_events"] - s["accepted_events"] for n, s in channels.items() if n != "http"
        ),
        p99_ms=max((s["p99_ms"] for s in channels.values() if s["p99_ms"] is not None), default=None),
        service_p99_ms=max(
            (s["service_p99_ms"] for s in channels.values() if s["service_p99_ms"] is not None), default=None
        ),
        lost=check["lost"],
        duplicates=check["duplicates"],
        graph=check,
        max_lag=lag.max_lag,
        drain_s=round(drain_s, 2) if drain_s is not None else None,
        lag_timeline=lag.timeline,
    )
    checks = graph_ok(check)
    if http:
        checks["rejected (429) < 1 % without retries"] = report["rejected_pct"] < 1.0
    if any(name != "http" for name in channels):
        checks["final loss 0 where the client retries"] = report["final_loss"] == 0
    checks["consumer lag drained afterwards"] = drain_s is not None
    return with_checks(report, checks)
