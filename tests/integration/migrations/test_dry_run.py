"""Dry-run of every migration on a throwaway copy: fails if duplicate (tenant, id) nodes remain."""

from __future__ import annotations

import pytest

from wavegraph.clients import neo4j_driver
from wavegraph.migrations import dry_run
from wavegraph.migrations.discover import DEFAULT_LOCATION, discover, load_tree
from wavegraph.migrations.graph_snapshot import graph_checksum
from wavegraph.migrations.samples import seed_duplicates
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

DUPLICATE_CHECK = "duplicate (tenant, id) keys among :Node"


async def test_dry_run_of_all_migrations_leaves_no_duplicates(
    neo4j_scratch: Settings, pg_scratch: Settings
) -> None:
    source = neo4j_scratch  # plays the "real" database: a graph with duplicates, nothing applied
    driver = neo4j_driver(source.neo4j, retries=True)
    try:
        seeded = await seed_duplicates(driver, tenant="t-dry", nodes=2_000)
        before = await graph_checksum(driver)

        reports = await dry_run(source)

        assert await graph_checksum(driver) == before  # the source was never touched
    finally:
        await driver.close()
    by_db = {r.db: r for r in reports}
    assert by_db.keys() == {"neo4j", "postgres"}
    assert all(r.ok for r in reports), [r.failure for r in reports]
    neo4j = by_db["neo4j"]
    assert neo4j.loaded == {"nodes": seeded.nodes, "relationships": seeded.relationships}
    [haa] = [s for s in neo4j.steps if s.version == "2025.07"]
    duplicates = {c.name: c.value for c in haa.checks}[DUPLICATE_CHECK]
    assert duplicates == 0, f"{duplicates} duplicate (tenant, id) keys remain after the HAA migration"
    tree = load_tree(DEFAULT_LOCATION, source)
    assert [s.version for s in by_db["postgres"].steps] == [m.version for m in discover(tree, "postgres")]
    assert [s.version for s in neo4j.steps] == [m.version for m in discover(tree, "neo4j")]
