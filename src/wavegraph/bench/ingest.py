"""``wavegraph bench ingest``: edges/s Kafka → Neo4j through the edge processor next to a bare writer.

Each repeat publishes the load-test workload to a fresh topic once; then, in alternating order, both
write it to the same Neo4j (each under a fresh tenant, so both start from an empty graph) with
``ingest.batch_size`` rows per ``UNWIND … MERGE`` query (the sink's own query text):

- ``bare_unwind``: the topic is read and decoded before the clock starts, into the very batches a
  consumer gets from it (``getmany`` of ``batch_size``, partitions interleaved as they come); the
  timed part only writes them, one batch after the other, in one driver session. Nothing else.
- ``processor``: the real edge processor (:func:`wavegraph.processors.edges.pipeline.run_edges`: fetch,
  decode, validate, bounded buffer, breaker, write, commit) consumes the topic, timed until the
  group's committed offsets cover every record.

Both are timed in steady state, from the end of the first batch to the end of the last. ``ratio`` =
best processor edges/s ÷ best bare edges/s (goal ≥ 0.8). ``lost`` and ``duplicates`` come from the
count and content check of the processor's graph. The processor publishes its breaker state to a
private Redis, so nothing else sees this bench.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from neo4j import AsyncDriver
from rich.console import Console

from wavegraph.clients import make_consumer, neo4j_driver
from wavegraph.events import EdgeEvent
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.scope import Scope, new_scope, private_services, scope_topics
from wavegraph.loadtest.verify import check_graph, delete_tenant, has_node_index
from wavegraph.loadtest.workers import InlineWorker
from wavegraph.loadtest.workload import REL
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import UPSERT, edge_row
from wavegraph.streams.publish import publish_values

POLL_S = 0.05


def run_ingest_bench(settings: Settings, quick: bool = False, out: Path | None = None) -> dict[str, Any]:
    """Run the bench on ``settings``' Kafka and Neo4j; write and print the report; return it."""
    edges = 20_000 if quick else 100_000
    repeats = 2 if quick else 3
    report = asyncio.run(_run(settings, edges, repeats, quick))
    if not report["params"]["node_index"]:
        Console(stderr=True).print(
            "[yellow]note:[/] Neo4j has no (:Node {tenant, id}) index; run `wavegraph migrate apply` "
            "for representative numbers (both writers pay the same scans, so the ratio still holds)."
        )
    write_report(report, out)
    return report


async def _run(settings: Settings, edges: int, repeats: int, quick: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    lost = duplicates = 0
    async with private_services(settings, "redis") as s:
        driver = neo4j_driver(s.neo4j)
        try:
            node_index = await has_node_index(driver)
            for rep in range(repeats):
                scope = new_scope(s, "bench")
                async with scope_topics(scope):
                    await publish_values(s.kafka, scope.topic, map(scope.workload.value, range(edges)))
                    for case in ("bare", "processor") if rep % 2 == 0 else ("processor", "bare"):
                        if case == "bare":
                            rate = await _bare(driver, scope, edges)
                            rows.append(_row("bare_unwind", rep, edges, rate))
                        else:
                            rate, check = await _processor(driver, scope, edges)
                            lost += check["lost"]
                            duplicates += check["duplicates"]
                            rows.append(_row("processor", rep, edges, rate))
        finally:
            await driver.close()
    best = {
        case: max(r["edges_per_s"] for r in rows if r["case"] == case)
        for case in ("bare_unwind", "processor")
    }
    params = {
        "edges": edges,
        "repeats": repeats,
        "batch_size": settings.ingest.batch_size,
        "linger_ms": settings.ingest.linger_ms,
        "partitions": settings.kafka.partitions,
        "neo4j": settings.neo4j.uri,
        "node_index": node_index,
        "quick": quick,
    }
    report = build_report("ingest", params, rows, round(best["processor"] / best["bare_unwind"], 3))
    report.update(lost=lost, duplicates=duplicates)
    return report


def _row(case: str, repeat: int, edges: int, rate: float) -> dict[str, Any]:
    return {"case": case, "repeat": repeat, "edges": edges, "edges_per_s": round(rate, 1)}


async def _bare(driver: AsyncDriver, scope: Scope, edges: int) -> float:
    tenant = f"{scope.tenant}-bare"
    batches = [
        [edge_row(EdgeEvent.model_validate({**orjson.loads(value), "tenant": tenant})) for value in batch]
        for batch in await _consumer_batches(scope, edges)
    ]
    query = UPSERT.format(rel=REL)
    try:
        async with driver.session() as session:
            await session.execute_write(_write, query, batches[0])
            first_done = time.perf_counter()
            for batch in batches[1:]:
                await session.execute_write(_write, query, batch)
            elapsed = time.perf_counter() - first_done
        return (edges - len(batches[0])) / max(elapsed, 1e-9)
    finally:
        await delete_tenant(driver, tenant)


async def _consumer_batches(scope: Scope, edges: int) -> list[list[bytes]]:
    """The scope's topic as the values of successive ``getmany(max_records=batch_size)`` calls."""
    kafka = scope.settings.kafka
    consumer = make_consumer(kafka)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(scope.topic, p) for p in range(scope.partitions)])
        batches: list[list[bytes]] = []
        seen = 0
        while seen < edges:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=scope.settings.ingest.batch_size)
            batch = [rec.value for records in fetched.values() for rec in records if rec.value is not None]
            if batch:
                batches.append(batch)
                seen += len(batch)
        return batches
    finally:
        await consumer.stop()


async def _write(tx: Any, query: str, rows: list[dict[str, Any]]) -> None:
    result = await tx.run(query, rows=rows)
    await result.consume()


async def _processor(driver: AsyncDriver, scope: Scope, edges: int) -> tuple[float, dict[str, Any]]:
    wl = scope.workload
    try:
        async with LagProbe(scope.settings.kafka, scope.group, scope.topic, scope.partitions) as lag:
            worker = InlineWorker(scope.settings)
            await worker.start()
            try:
                first, done = await lag.time_commits(edges, worker.check, POLL_S)
            finally:
                await worker.close()
        if first is None:  # everything committed before the first look: too small to time
            raise RuntimeError(f"{edges} edges were committed before the first poll; use more edges")
        rate = (edges - first[1]) / max(done - first[0], 1e-9)
        check = await check_graph(driver, wl, range(edges))
        return rate, check.as_dict()
    finally:
        await delete_tenant(driver, wl.tenant)
