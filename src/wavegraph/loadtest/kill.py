"""Worker SIGKILL mid-batch: the processor dies without flushing or committing; nothing is lost or doubled.

``events`` edges are published (acknowledged by the broker: accepted), then ``wavegraph run edges``
runs in its own process. Each time another ``1 / (kills + 1)`` of the edges is in Neo4j the worker
gets SIGKILL, and is started again. At each kill, edges in Neo4j beyond the group's committed offsets
were written but not committed: the restarted worker consumes them again and the idempotent MERGE must
absorb the replay. At the end every event must be in Neo4j exactly once.

To make sure a kill lands inside a batch, each kill waits (after its threshold) until Neo4j lists a
running transaction of the worker writing a batch of the run's tenant (``SHOW TRANSACTIONS``), and
kills the process then: the transaction dies with its connection and the batch was never committed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wavegraph.clients import neo4j_driver
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.scope import Scope, new_scope, scope_topics
from wavegraph.loadtest.summary import graph_ok, with_checks
from wavegraph.loadtest.verify import count_edges, verify_run
from wavegraph.loadtest.workers import WorkerProcess, worker_log
from wavegraph.report import build_report
from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values


@dataclass(frozen=True)
class KillPlan:
    events: int = 100_000
    kills: int = 2
    timeout_s: float = 600.0
    cleanup: bool = True


async def run_worker_kill(settings: Settings, plan: KillPlan, log_dir: Path | None = None) -> dict[str, Any]:
    """Run the scenario on ``settings``' services; return its report. The worker's output is kept in
    ``log_dir`` if given."""
    scope = new_scope(settings, "kill")
    with worker_log(log_dir, f"worker-{scope.run}") as log:
        return await _kill(settings, plan, scope, WorkerProcess(scope.settings, log))


async def _kill(settings: Settings, plan: KillPlan, scope: Scope, worker: WorkerProcess) -> dict[str, Any]:
    wl = scope.workload
    kills: list[dict[str, Any]] = []
    driver = neo4j_driver(scope.settings.neo4j)
    started = time.monotonic()
    try:
        async with (
            scope_topics(scope),
            LagProbe(settings.kafka, scope.group, scope.topic, scope.partitions) as lag,
        ):
            await publish_values(settings.kafka, scope.topic, map(wl.value, range(plan.events)))
            await worker.start()
            try:
                for k in range(1, plan.kills + 1):
                    threshold = plan.events * k // (plan.kills + 1)
                    await _wait_for_edges(driver, wl.tenant, threshold, worker, started + plan.timeout_s)
                    in_flight = await _wait_for_write_in_flight(driver, wl.tenant, worker)
                    await worker.kill()
                    written, committed = await count_edges(driver, wl.tenant), await lag.committed()
                    kills.append(
                        {
                            "kill": k,
                            "write_in_flight": in_flight,
                            "at_s": round(time.monotonic() - started, 2),
                            "in_neo4j": written,
                            "committed": committed,
                            "written_not_committed": written - committed,
                        }
                    )
                    await worker.start()
                drain_s = await lag.wait_drained(max(1.0, started + plan.timeout_s - time.monotonic()))
            finally:
                await worker.stop()
        check = await verify_run(scope.settings.neo4j, wl, range(plan.events), cleanup=plan.cleanup)
    finally:
        await driver.close()
    params = {"events": plan.events, "kills": plan.kills, "batch_size": scope.settings.ingest.batch_size}
    report = build_report("chaos_worker_kill", params, kills, None)
    report.update(
        lost=check.lost,
        duplicates=check.duplicates,
        graph=check.as_dict(),
        kills_mid_write=sum(k["write_in_flight"] for k in kills),
        replayed=sum(max(0, k["written_not_committed"]) for k in kills),
        drain_s=round(drain_s, 2),
        elapsed_s=round(time.monotonic() - started, 2),
    )
    checks = {
        **graph_ok(report["graph"]),
        "every kill landed during a batch write": report["kills_mid_write"] == plan.kills,
    }
    return with_checks(report, checks)


async def _wait_for_edges(
    driver: Any, tenant: str, threshold: int, worker: WorkerProcess, deadline: float
) -> None:
    while await count_edges(driver, tenant) < threshold:
        worker.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {threshold} edges in Neo4j before the deadline:\n{worker.tail()}")
        await asyncio.sleep(0.05)


IN_FLIGHT = """
SHOW TRANSACTIONS YIELD currentQuery, parameters
WHERE currentQuery CONTAINS 'UNWIND $rows AS r' AND currentQuery CONTAINS 'MERGE (a)-[e:'
RETURN parameters.rows[0].tenant AS tenant
"""


async def _wait_for_write_in_flight(
    driver: Any, tenant: str, worker: WorkerProcess, timeout_s: float = 10.0
) -> bool:
    """Wait until Neo4j runs a batch write of ``tenant``; False if none was seen within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check()
        records, _, _ = await driver.execute_query(IN_FLIGHT)
        if any(r["tenant"] == tenant for r in records):
            return True
        await asyncio.sleep(0.005)
    return False
