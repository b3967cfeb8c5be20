"""NodeStore against the real PostgreSQL and Neo4j: a row PostgreSQL refuses costs only that row.

PostgreSQL refuses a NUL in a node id (``text``), a NaN in a vector, a negative PageRank (the CHECK)
and a vector of the wrong dimension; the good rows around them are stored, the refused ones counted.
Neo4j takes all of them (its own refusals are simulated in ``tests/unit/processors/test_node_store.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from graph_kafka import TENANT, delete_prefixed, neo4j_nodes, pg_rows

from wavegraph.clients import neo4j_driver, pg_pool
from wavegraph.settings import Settings
from wavegraph.sinks.node_embeddings import NodeRows, NodeStore

pytestmark = pytest.mark.services


@pytest.fixture
async def node_store(migrated: Settings, prefix: str) -> AsyncIterator[NodeStore]:
    pool = await pg_pool(migrated.postgres, max_size=2)
    driver = neo4j_driver(migrated.neo4j)
    try:
        yield NodeStore(driver, pool, chunk=8)
    finally:
        await pool.close()
        await driver.close()
        await delete_prefixed(migrated, prefix)


def rows_with_bad_ones(prefix: str, dim: int) -> tuple[NodeRows, set[str]]:
    n = 20
    ids = [f"{prefix}v{i}" for i in range(n)]
    pagerank = np.full(n, 1.0 / n)
    vec = np.full((n, dim), 0.05, np.float32)
    haa = vec.copy()
    ids[3] = f"{prefix}nul\x00id"
    haa[9, 0] = np.nan
    pagerank[14] = -1e-18
    return NodeRows(TENANT, 5, ids, pagerank, vec, haa), {ids[3], ids[9], ids[14]}


async def test_refused_rows_are_skipped_and_the_others_stored(
    node_store: NodeStore, migrated: Settings, prefix: str
) -> None:
    rows, bad = rows_with_bad_ones(prefix, migrated.graph.embedding_dim)
    advanced: list[int] = []
    assert await node_store.write(rows, advanced.append) == len(bad)
    assert sum(advanced) == 2 * len(rows)
    stored = await pg_rows(migrated, prefix)
    assert set(stored) == set(rows.node_ids) - bad
    assert {r.version for r in stored.values()} == {5}
    assert {node for node, _, _ in await neo4j_nodes(migrated, prefix)} == set(rows.node_ids)


async def test_a_dimension_the_column_does_not_have_refuses_every_row_without_raising(
    node_store: NodeStore, migrated: Settings, prefix: str
) -> None:
    rows, _ = rows_with_bad_ones(prefix, migrated.graph.embedding_dim + 1)
    assert await node_store.write_postgres(rows) == len(rows)
    assert await pg_rows(migrated, prefix) == {}


def clean_rows(prefix: str, dim: int, version: int, value: float) -> NodeRows:
    n = 6
    ids = [f"{prefix}t{i}" for i in range(n)]
    vec = np.full((n, dim), value, np.float32)
    return NodeRows(TENANT, version, ids, np.full(n, value / n), vec, vec.copy())


async def test_an_older_recompute_never_overwrites_a_newer_one(
    node_store: NodeStore, migrated: Settings, prefix: str
) -> None:
    """Version 2 is written, then a slow version-1 recompute lands: both databases keep version 2's
    values; a version-3 write then replaces them (the guard is on the version, not on first write)."""
    dim = migrated.graph.embedding_dim
    newer, older = clean_rows(prefix, dim, 2, 0.2), clean_rows(prefix, dim, 1, 0.1)
    assert await node_store.write(newer) == 0
    assert await node_store.write(older) == 0  # not a refusal: a row that is simply not newer
    stored = await pg_rows(migrated, prefix)
    assert {r.version for r in stored.values()} == {2}
    assert all(np.allclose(r.haa, 0.2) and r.pagerank == pytest.approx(0.2 / 6) for r in stored.values())
    graph = await neo4j_nodes(migrated, prefix)
    assert {v for _, _, v in graph} == {2}
    assert all(haa is not None and np.allclose(haa, 0.2) for _, haa, _ in graph)
    assert await node_store.write(clean_rows(prefix, dim, 3, 0.3)) == 0
    assert {r.version for r in (await pg_rows(migrated, prefix)).values()} == {3}
    assert {v for _, _, v in await neo4j_nodes(migrated, prefix)} == {3}
