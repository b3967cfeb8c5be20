"""``wavegraph bench scale``: edges/s into Neo4j with 1, 2 and 3 edge workers on a 3-broker cluster.

A throwaway 3-broker KRaft cluster (RF 3, ``min.insync.replicas`` 2) and a throwaway Redis are
started for the run; Neo4j is the configured one. For each worker count ``n``, a fresh topic of
:data:`PARTITIONS` partitions is filled with ``edges`` keyed events of a fresh tenant, then ``n``
``wavegraph run edges`` processes (one consumer group) drain it. Timed from the group's first commit
to the commit that covers every record (the steady state: process start-up and the first rebalance
are outside). Then the graph is checked by count and content (``lost``, ``duplicates``) and deleted.

**Where the time goes**: the CPU seconds each process used during the drain (from
``/proc/<pid>/stat``, Linux): the workers together, the Neo4j server, the three brokers; divided by
the drain's wall time they say which one saturates the machine's cores. ``ratio`` = edges/s with the
most workers ÷ edges/s with one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from wavegraph.devservices.kafka import brokers, with_brokers
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.scope import new_scope, private_services, scope_topics
from wavegraph.loadtest.verify import verify_run
from wavegraph.loadtest.workers import WorkerProcess, worker_log
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values

__all__ = ["PARTITIONS", "cpu_seconds", "measure_scale", "neo4j_pids_of", "run_scale_bench"]

PARTITIONS = 6  # divisible by 1, 2 and 3 workers
BROKERS = 3
POLL_S = 0.1
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICK


def run_scale_bench(
    settings: Settings,
    *,
    quick: bool = False,
    workers: Sequence[int] = (1, 2, 3),
    edges: int | None = None,
    out: Path | None = None,
    heap: str = "256m",
) -> dict[str, Any]:
    """Run the bench (see the module docstring), write ``out`` (default bench/results/scale.json),
    print the table and return the report."""
    count = edges or (20_000 if quick else 100_000)
    cluster = with_brokers(settings, BROKERS)
    cluster = cluster.model_copy(
        update={"kafka": cluster.kafka.model_copy(update={"heap": heap, "partitions": PARTITIONS})}
    )

    neo4j_pids = neo4j_pids_of(settings)  # the configured server: look it up before the private swap

    async def main() -> dict[str, Any]:
        async with private_services(cluster, "kafka", "redis") as s:
            return await measure_scale(s, workers, count, quick, neo4j_pids)

    # a new topic's first metadata answer may come from a broker that has not seen it yet (retried)
    logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)
    report = asyncio.run(main())
    write_report(report, out, Console())
    return report


async def measure_scale(
    settings: Settings, workers: Sequence[int], edges: int, quick: bool, neo4j_pids: list[int]
) -> dict[str, Any]:
    """The report for ``settings`` already pointing at the 3-broker cluster (and a private Redis);
    ``neo4j_pids`` are the Neo4j server's processes, whose CPU time is reported."""
    broker_pids = [pid for b in brokers(settings) if (pid := b.pid()) is not None]
    rows = [await _one(settings, n, edges, broker_pids, neo4j_pids) for n in workers]
    first, last = rows[0], rows[-1]
    params = {
        "edges": edges,
        "workers": list(workers),
        "partitions": PARTITIONS,
        "brokers": BROKERS,
        "replication_factor": 3,
        "batch_size": settings.ingest.batch_size,
        "cpus": os.cpu_count(),
        "neo4j": settings.neo4j.uri,
        "quick": quick,
    }
    ratio = round(last["edges_per_s"] / max(first["edges_per_s"], 1e-9), 3)
    return build_report("scale", params, rows, ratio)


async def _one(
    settings: Settings, n: int, edges: int, broker_pids: list[int], neo4j_pids: list[int]
) -> dict[str, Any]:
    scope = new_scope(settings, f"scale{n}")
    wl = scope.workload
    async with scope_topics(scope):
        await publish_values(settings.kafka, scope.topic, map(wl.value, range(edges)))
        with worker_log(None, f"scale-{n}") as log:
            procs = [WorkerProcess(scope.settings, log.with_name(f"scale-{n}-{i}.log")) for i in range(n)]
            for p in procs:
                await p.start()
            try:
                async with LagProbe(settings.kafka, scope.group, scope.topic, scope.partitions) as lag:
                    cpu0: dict[str, float] = {}

                    def check() -> None:
                        for p in procs:
                            p.check()

                    def at_first() -> None:
                        cpu0.update(_cpu(procs, broker_pids, neo4j_pids))

                    first, done = await lag.time_commits(edges, check, POLL_S, on_first=at_first)
                    cpu1 = _cpu(procs, broker_pids, neo4j_pids)
            finally:
                for p in procs:
                    await p.stop()
    if first is None:
        raise RuntimeError(f"{edges} edges were committed before the first poll; use more edges")
    wall = max(done - first[0], 1e-9)
    graph = await verify_run(settings.neo4j, wl, range(edges))
    row: dict[str, Any] = {
        "workers": n,
        "edges": edges,
        "drain_s": round(wall, 2),
        "edges_per_s": round((edges - first[1]) / wall, 1),
        "lost": graph.lost,
        "duplicates": graph.duplicates,
        "mismatched": graph.mismatched,
    }
    for name in cpu1:
        row[f"cpu_{name}"] = round((cpu1[name] - cpu0.get(name, 0.0)) / wall, 2)  # cores busy on average
    return row


def _cpu(procs: Sequence[WorkerProcess], broker_pids: list[int], neo4j_pids: list[int]) -> dict[str, float]:
    return {
        "workers": cpu_seconds([p.pid for p in procs if p.pid is not None]),
        "neo4j": cpu_seconds(neo4j_pids),
        "brokers": cpu_seconds(broker_pids),
    }


def neo4j_pids_of(settings: Settings) -> list[int]:
    """The pid of the Neo4j server ``wavegraph services up`` started for ``settings`` (none if not)."""
    from wavegraph.devservices.manager import service

    pid = service(settings, "neo4j").pid()
    return [pid] if pid is not None else []
