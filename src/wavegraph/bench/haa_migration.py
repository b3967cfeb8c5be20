"""``bench haa-migration``: the HAA migration (V2025.07) on 100,000 nodes / 300,000 relationships.

On a throwaway Neo4j (:func:`wavegraph.devservices.ephemeral.ephemeral`, never the shared one): seed the
sample graph of :mod:`wavegraph.migrations.samples` (5 % of node records repeat another's (tenant, id),
each duplicate with relationships in both directions), apply every Neo4j migration through the runner
(content checksums before/after, post-checks), then undo the HAA migration and check the checksum is
back. Rows: seconds for the seed, the V2025.05 indexes, the HAA migration itself (statements only), its
snapshots and checks, and the undo. ``--quick``: 10,000 nodes / 30,000 relationships.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from wavegraph.clients import neo4j_driver
from wavegraph.migrations import api
from wavegraph.migrations.graph_snapshot import graph_checksum
from wavegraph.migrations.samples import seed_duplicates
from wavegraph.migrations.scratch import scratch
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings

HAA_VERSION = "2025.07"
Row = dict[str, Any]


def run_haa_migration_bench(
    settings: Settings, quick: bool = False, out: Path | None = None
) -> dict[str, Any]:
    """Run the bench (see the module docstring), write its JSON report and return it."""
    nodes = 10_000 if quick else 100_000
    rows, facts = asyncio.run(_run(settings, nodes, 3 * nodes))
    params = {"nodes": nodes, "relationships": 3 * nodes, "dup_fraction": 0.05, "quick": quick, **facts}
    report = build_report("haa_migration", params, rows, None)
    write_report(report, out)
    return report


async def _run(
    settings: Settings, nodes: int, relationships: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with scratch(settings, "neo4j") as local:
        driver = neo4j_driver(local.neo4j, retries=True)
        try:
            start = time.perf_counter()
            seeded = await seed_duplicates(driver, tenant="bench", nodes=nodes, relationships=relationships)
            rows.append({"step": "seed", "seconds": round(time.perf_counter() - start, 3)})
            for step in await api.apply(local, dbs=("neo4j",)):
                rows.append(
                    {
                        "step": f"apply {step.script}",
                        "seconds": step.execution_ms / 1000,
                        "snapshot_s": step.snapshot_ms / 1000,
                        "checks_ok": all(c.ok for c in step.checks),
                        "checks": {c.name: c.value for c in step.checks},
                    }
                )
                if step.version == HAA_VERSION:
                    haa_before = step.before_checksum
            start = time.perf_counter()
            [undo] = await api.rollback(local, None, dbs=("neo4j",))
            restored = await graph_checksum(driver) == haa_before
            rows.append(
                {"step": f"undo {undo.script}", "seconds": undo.execution_ms / 1000, "restored": restored}
            )
        finally:
            await driver.close()
    facts = {
        "node_records": seeded.nodes,
        "relationships_seeded": seeded.relationships,
        "duplicate_records": seeded.duplicate_records,
        "duplicated_keys": seeded.duplicated_keys,
    }
    return rows, facts
