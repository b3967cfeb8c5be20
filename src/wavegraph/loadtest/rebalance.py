"""Rebalance under load: SIGKILL one of three edge workers, start a fourth, lose and double nothing.

``workers`` ``wavegraph run edges`` processes (one consumer group) consume a topic of ``partitions``
partitions while a producer offers ``rate`` keyed edge events/s (acks=all, resending what was not
acknowledged). Times count from the group's first commit (the workers are working). At ``kill_at_s``
one worker gets SIGKILL (no flush, no commit: the group notices at the
session time-out and moves its partitions, whose uncommitted records the new owners consume again); at
``join_at_s`` a new worker joins (a second rebalance: every member's revoked partitions are flushed and
committed before they move). The load stops at ``seconds``; the group's lag must drain. Then:

- every acknowledged event is in Neo4j exactly once with its content (:mod:`.verify`);
- no worker logged a revocation whose flush or commit missed the deadline (the runtime's warnings
  ``revocation of …`` / ``did not finish within the deadline``): each revocation was flushed and
  committed;
- the group committed beyond its offsets at the kill (the survivors took over) and the lag drained;
- no surviving worker exited.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wavegraph.clients import neo4j_driver
from wavegraph.loadtest.broker_kill import record
from wavegraph.loadtest.kafka_load import produce_at_rate
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.scope import new_scope, scope_topics
from wavegraph.loadtest.summary import graph_ok, with_checks
from wavegraph.loadtest.verify import count_edges, verify_run
from wavegraph.loadtest.workers import WorkerProcess, worker_log
from wavegraph.report import build_report
from wavegraph.settings import Settings

__all__ = ["REVOCATION_WARNINGS", "RebalancePlan", "run_rebalance"]

REVOCATION_WARNINGS = ("revocation of", "did not finish within the deadline")


@dataclass(frozen=True)
class RebalancePlan:
    workers: int = 3
    partitions: int = 6
    rate: float = 600.0  # events/s, straight to Kafka
    seconds: float = 30.0  # of load
    kill_at_s: float = 8.0
    join_at_s: float = 16.0
    drain_timeout_s: float = 120.0
    cleanup: bool = True


async def run_rebalance(
    settings: Settings, plan: RebalancePlan, log_dir: Path | None = None
) -> dict[str, Any]:
    """Run the scenario on ``settings``' services; return its report (worker logs kept in ``log_dir``)."""
    if not plan.kill_at_s < plan.join_at_s < plan.seconds:
        raise ValueError("need kill_at_s < join_at_s < seconds")
    kafka = settings.kafka.model_copy(update={"partitions": plan.partitions})
    scope = new_scope(settings.model_copy(update={"kafka": kafka}), "rebalance")
    wl = scope.workload
    events: list[dict[str, Any]] = []
    started = time.monotonic()
    with worker_log(log_dir, f"rebalance-{scope.run}") as log:
        workers = [
            WorkerProcess(scope.settings, log.with_name(f"{log.stem}-{i}.log"))
            for i in range(plan.workers + 1)
        ]
        driver = neo4j_driver(scope.settings.neo4j)
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(scope_topics(scope))
                lag = await stack.enter_async_context(
                    LagProbe(scope.settings.kafka, scope.group, scope.topic, scope.partitions)
                )
                for w in workers[: plan.workers]:
                    await w.start()
                try:
                    stop = asyncio.Event()
                    load = asyncio.create_task(
                        produce_at_rate(
                            scope.settings.kafka,
                            scope.topic,
                            lambda i: record(wl, i),
                            rate=plan.rate,
                            seconds=86_400,
                            batch_size=50,
                            stop=stop,
                        )
                    )
                    # the clock starts once the group works: its first commit (workers take seconds to
                    # start and join, more on a fresh cluster)
                    t0 = await _first_commit(
                        lag, workers[: plan.workers], load, started + plan.drain_timeout_s
                    )
                    events.append(await _moment("first commit", started, driver, wl.tenant, lag))
                    victim, newcomer = workers[0], workers[plan.workers]
                    await _at(t0 + plan.kill_at_s, workers[: plan.workers], load)
                    await victim.kill()
                    events.append(await _moment("kill", started, driver, wl.tenant, lag))
                    await _at(t0 + plan.join_at_s, workers[1 : plan.workers], load)
                    await newcomer.start()
                    events.append(await _moment("join", started, driver, wl.tenant, lag))
                    await _at(t0 + plan.seconds, workers[1:], load)
                    stop.set()
                    stats = await load
                    drain_s = await lag.wait_drained(plan.drain_timeout_s)
                    committed_end = await lag.committed()
                    survivors_alive = all(w.alive for w in workers[1:])
                finally:
                    for w in workers:
                        await w.stop()
            warnings = _revocation_warnings(workers)
        finally:
            await driver.close()
    graph = await verify_run(scope.settings.neo4j, wl, stats.accepted, cleanup=plan.cleanup)
    params = {
        "workers": plan.workers,
        "partitions": plan.partitions,
        "rate": plan.rate,
        "seconds": plan.seconds,
        "kill_at_s": plan.kill_at_s,
        "join_at_s": plan.join_at_s,
        "batch_size": scope.settings.ingest.batch_size,
        "brokers": len(scope.settings.kafka.broker_ports),
    }
    report = build_report("chaos_rebalance", params, events, None)
    report.update(
        accepted=stats.accepted_events,
        load=stats.summary(),
        lost=graph.lost,
        duplicates=graph.duplicates,
        graph=graph.as_dict(),
        committed_end=committed_end,
        drain_s=round(drain_s, 2),
        revocation_warnings=warnings,
        elapsed_s=round(time.monotonic() - started, 2),
    )
    checks = {
        **graph_ok(report["graph"]),
        "the producer never gave up on an event": stats.failed_events == 0,
        "every revocation was flushed and committed in time": not warnings,
        "work was committed before the kill": events[1]["committed"] > 0,
        "the group committed beyond its offsets at the kill": committed_end > events[1]["committed"],
        "no surviving worker exited": survivors_alive,
    }
    return with_checks(report, checks)


async def _first_commit(
    lag: LagProbe, running: list[WorkerProcess], load: asyncio.Task[Any], deadline: float
) -> float:
    """Wait until the group has committed something; return when (``time.monotonic()``)."""
    while await lag.committed() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the edge workers committed nothing")
        await _at(time.monotonic() + 0.2, running, load)
    return time.monotonic()


async def _at(deadline: float, running: list[WorkerProcess], load: asyncio.Task[Any]) -> None:
    """Sleep until ``deadline``, raising if a running worker exits or the load fails meanwhile."""
    while time.monotonic() < deadline:
        for w in running:
            w.check()
        if load.done():
            load.result()
        await asyncio.sleep(0.1)


async def _moment(what: str, started: float, driver: Any, tenant: str, lag: LagProbe) -> dict[str, Any]:
    return {
        "event": what,
        "at_s": round(time.monotonic() - started, 2),
        "in_neo4j": await count_edges(driver, tenant),
        "committed": await lag.committed(),
    }


def _revocation_warnings(workers: list[WorkerProcess]) -> list[str]:
    out: list[str] = []
    for w in workers:
        try:
            text = w.log.read_text(errors="replace")
        except FileNotFoundError:
            continue
        out.extend(line for line in text.splitlines() if any(m in line for m in REVOCATION_WARNINGS))
    return out
