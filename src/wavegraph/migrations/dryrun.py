"""``migrate dry-run``: rehearse every pending migration on a throwaway instance, never on the target.

For each database: start an ephemeral instance (:func:`wavegraph.devservices.ephemeral.ephemeral`, its
own data dir and port), load a copy of the configured database's data (the default) or a named sample,
apply every pending migration with its post-checks (and automatic rollback), report timings, checks
and the before/after checksums, and tear the instance down. The databases are rehearsed concurrently.

Samples: ``empty`` (nothing) and ``duplicates`` (:mod:`.samples`: a graph with 5 % duplicated
(tenant, id) keys; PostgreSQL gets nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wavegraph.clients import neo4j_driver
from wavegraph.migrations.api import open_target
from wavegraph.migrations.copy import copy_neo4j, copy_postgres
from wavegraph.migrations.discover import Tree, discover, load_tree
from wavegraph.migrations.errors import MigrationError, MigrationFailed, RepairNeeded
from wavegraph.migrations.model import DBS, Db, StepReport
from wavegraph.migrations.runner import apply
from wavegraph.migrations.samples import seed_duplicates
from wavegraph.migrations.scratch import scratch as throwaway
from wavegraph.settings import Settings

SAMPLES = ("empty", "duplicates")


@dataclass
class DryRunReport:
    db: Db
    source: str
    load_s: float
    loaded: dict[str, Any]
    steps: list[StepReport] = field(default_factory=list)
    failure: str | None = None
    total_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None and all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "source": self.source,
            "load_s": round(self.load_s, 3),
            "loaded": self.loaded,
            "steps": [s.as_dict() for s in self.steps],
            "failure": self.failure,
            "ok": self.ok,
            "total_s": round(self.total_s, 3),
        }


async def dry_run(
    settings: Settings,
    location: Path | None = None,
    dbs: Sequence[Db] = DBS,
    sample: str | None = None,
    sample_nodes: int = 10_000,
) -> list[DryRunReport]:
    """Rehearse the pending migrations of each of ``dbs``; see the module docstring."""
    if sample is not None and sample not in SAMPLES:
        raise MigrationError(f"unknown sample {sample!r}; choose from {', '.join(SAMPLES)}")
    tree = load_tree(location, settings)
    try:
        async with asyncio.TaskGroup() as group:  # the databases are rehearsed side by side
            tasks = [group.create_task(_rehearse(settings, tree, db, sample, sample_nodes)) for db in dbs]
    except ExceptionGroup as group_error:  # e.g. an instance that would not start: report the first cause
        raise group_error.exceptions[0] from group_error
    return [t.result() for t in tasks]


async def _rehearse(
    settings: Settings, tree: Tree, db: Db, sample: str | None, sample_nodes: int
) -> DryRunReport:
    start = time.perf_counter()
    async with throwaway(settings, db) as scratch:
        t0 = time.perf_counter()
        source, loaded = await _load(settings, scratch, db, sample, sample_nodes)
        report = DryRunReport(db, source, time.perf_counter() - t0, loaded)
        async with open_target(scratch, db) as target:
            try:
                report.steps = await apply(target, discover(tree, db))
            except (MigrationFailed, RepairNeeded) as exc:  # a copied history can hold a failed entry
                report.failure = str(exc)
    report.total_s = time.perf_counter() - start
    return report


async def _load(
    settings: Settings, scratch: Settings, db: Db, sample: str | None, sample_nodes: int
) -> tuple[str, dict[str, Any]]:
    if sample is None:
        if db == "neo4j":
            return f"copy of {settings.neo4j.uri}", await copy_neo4j(settings, scratch)
        return f"copy of {settings.postgres.url}", await copy_postgres(settings, scratch)
    if sample == "duplicates" and db == "neo4j":
        driver = neo4j_driver(scratch.neo4j, retries=True)
        try:
            seeded = await seed_duplicates(driver, nodes=sample_nodes)
        finally:
            await driver.close()
        return f"sample {sample}", seeded.__dict__
    return f"sample {sample}", {}
