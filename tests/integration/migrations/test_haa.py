"""The HAA migration on 10,000 nodes with 5 % duplicated (tenant, id) keys, on a throwaway Neo4j."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from neo4j import AsyncDriver
from neo4j.exceptions import ConstraintError

from wavegraph.clients import neo4j_driver
from wavegraph.migrations import api
from wavegraph.migrations.graph_snapshot import graph_checksum
from wavegraph.migrations.model import version_key
from wavegraph.migrations.samples import REL_TYPES, seed_duplicates
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

TENANT = "t-haa"
EDGES = """
MATCH (a:Node)-[r]->(b:Node)
RETURN a.tenant AS at, a.id AS ai, type(r) AS type, properties(r) AS props, b.tenant AS bt, b.id AS bi
"""
KEYS = "MATCH (n:Node) RETURN n.tenant AS tenant, n.id AS id, keys(n) AS keys"
DUPLICATES = """
MATCH (n:Node) WITH n.tenant AS tenant, n.id AS id, count(*) AS copies WHERE copies > 1 RETURN count(*) AS c
"""


async def _edges(driver: AsyncDriver) -> Counter[tuple[Any, ...]]:
    """Every relationship by its endpoints' keys, type and properties (the runner's markers aside)."""
    records, _, _ = await driver.execute_query(EDGES)
    return Counter(
        (
            r["at"],
            r["ai"],
            r["type"],
            r["bt"],
            r["bi"],
            tuple(sorted((k, v) for k, v in r["props"].items() if not k.startswith("_haa_"))),
        )
        for r in records
    )


async def _keys(driver: AsyncDriver) -> dict[tuple[str, str], set[str]]:
    """Property keys of each (tenant, id), united over its duplicates."""
    records, _, _ = await driver.execute_query(KEYS)
    out: dict[tuple[str, str], set[str]] = {}
    for r in records:
        out.setdefault((r["tenant"], r["id"]), set()).update(r["keys"])
    return out


async def test_haa_merges_duplicates_without_losing_a_relationship(neo4j_scratch: Settings) -> None:
    driver = neo4j_driver(neo4j_scratch.neo4j, retries=True)
    try:
        seeded = await seed_duplicates(driver, tenant=TENANT, nodes=10_000)
        assert seeded.duplicate_records == 500
        edges_before, keys_before = await _edges(driver), await _keys(driver)
        assert sum(edges_before.values()) == seeded.relationships
        assert {edge[2] for edge in edges_before} == set(REL_TYPES)

        reports = await api.apply(neo4j_scratch, dbs=("neo4j",))
        [haa] = [r for r in reports if r.script == "V2025.07__haa_index.cypher"]
        assert all(c.ok for c in haa.checks), haa.checks

        records, _, _ = await driver.execute_query(DUPLICATES)
        assert records[0]["c"] == 0
        assert await _edges(driver) == edges_before  # count and endpoints, types and properties
        assert await _keys(driver) == keys_before  # each survivor holds its duplicates' properties

        records, _, _ = await driver.execute_query(
            "SHOW VECTOR INDEXES YIELD name, state, options WHERE name = 'node_haa' RETURN state, options"
        )
        assert records[0]["state"] == "ONLINE"
        dim = records[0]["options"]["indexConfig"]["vector.dimensions"]
        assert dim == neo4j_scratch.graph.embedding_dim

        with pytest.raises(ConstraintError):
            await driver.execute_query("CREATE (:Node {tenant: $t, id: 'n1'})", t=TENANT)

        # every migration after 2025.05 is undone (newer files may have joined the tree since)
        undos = await api.rollback(neo4j_scratch, "2025.05", dbs=("neo4j",))
        assert "U2025.07__haa_index.cypher" in [u.script for u in undos]
        floor = version_key("2025.05")
        first_after = next(r for r in reports if version_key(r.version) > floor)
        assert await graph_checksum(driver) == first_after.before_checksum  # the duplicates are back, exactly
    finally:
        await driver.close()
