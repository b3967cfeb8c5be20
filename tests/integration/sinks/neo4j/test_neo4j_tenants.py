"""Tenant isolation in Neo4j: two tenants with the same node ids never share a node, an edge or a
tombstone, against the real Neo4j through the edge sink."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from neo4j import AsyncDriver

from wavegraph.events import EdgeEvent
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import Neo4jEdgeSink
from wavegraph.streams.sink import Item

pytestmark = pytest.mark.services


@pytest.fixture
async def other(driver: AsyncDriver) -> AsyncIterator[str]:
    """A second fresh tenant, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    await driver.execute_query(
        "MATCH (n) WHERE (n:Node OR n:EdgeTombstone) AND n.tenant = $t DETACH DELETE n", t=name
    )


def items(events: list[EdgeEvent]) -> list[Item[EdgeEvent]]:
    return [Item(ev, "edges", 0, i, b"{}") for i, ev in enumerate(events)]


async def edges(driver: AsyncDriver, tenant: str) -> list[tuple[str, str, str, float]]:
    """The tenant's edges, found from its nodes without filtering the far end by tenant."""
    records, _, _ = await driver.execute_query(
        "MATCH (a:Node {tenant: $t})-[e]->(b) RETURN a.id AS s, type(e) AS r, b.id AS d, e.weight AS w "
        "ORDER BY s, r, d",
        t=tenant,
    )
    return [(r[0], r[1], r[2], r[3]) for r in records]


async def test_the_same_node_ids_in_two_tenants_are_two_graphs(
    services: Settings, driver: AsyncDriver, tenant: str, other: str
) -> None:
    sink = Neo4jEdgeSink(driver, services.ingest)
    batch = []
    for src, dst in (("a", "b"), ("b", "c"), ("c", "a")):  # interleaved in one batch
        batch.append(EdgeEvent(tenant=tenant, src=src, dst=dst, weight=1.0, ts=1.0))
        batch.append(EdgeEvent(tenant=other, src=src, dst=dst, weight=2.0, ts=1.0))
    batch.append(EdgeEvent(tenant=other, src="a", dst="d", weight=2.0, ts=1.0))
    await sink.write(items(batch))
    assert await sink.flush() == []
    assert await edges(driver, tenant) == [
        ("a", "LINKS", "b", 1.0),
        ("b", "LINKS", "c", 1.0),
        ("c", "LINKS", "a", 1.0),
    ]
    assert await edges(driver, other) == [
        ("a", "LINKS", "b", 2.0),
        ("a", "LINKS", "d", 2.0),
        ("b", "LINKS", "c", 2.0),
        ("c", "LINKS", "a", 2.0),
    ]
    records, _, _ = await driver.execute_query(
        "MATCH (n:Node) WHERE n.tenant IN [$a, $b] RETURN n.tenant, n.id", a=tenant, b=other
    )
    assert sorted((r[0], r[1]) for r in records) == sorted(
        [(tenant, i) for i in "abc"] + [(other, i) for i in "abcd"]
    )
    crossing, _, _ = await driver.execute_query(
        "MATCH (x:Node)-[e]-(y:Node) WHERE x.tenant IN [$a, $b] AND x.tenant <> y.tenant RETURN count(e)",
        a=tenant,
        b=other,
    )
    assert crossing[0][0] == 0

    # a delete in one tenant removes its edge only, and its tombstone holds back only its own replays
    await sink.write(items([EdgeEvent(tenant=tenant, src="a", dst="b", ts=10.0, op="delete")]))
    assert await sink.flush() == []
    await sink.write(
        items(
            [
                EdgeEvent(tenant=tenant, src="a", dst="b", weight=5.0, ts=5.0),  # older than the delete
                EdgeEvent(tenant=other, src="a", dst="b", weight=5.0, ts=5.0),  # newer than its own
            ]
        )
    )
    assert await sink.flush() == []
    assert ("a", "LINKS", "b", 5.0) not in await edges(driver, tenant)
    assert [e for e in await edges(driver, tenant) if e[:3] == ("a", "LINKS", "b")] == []
    assert ("a", "LINKS", "b", 5.0) in await edges(driver, other)
    tombstones, _, _ = await driver.execute_query(
        "MATCH (t:EdgeTombstone) WHERE t.tenant IN [$a, $b] RETURN t.tenant", a=tenant, b=other
    )
    assert [r[0] for r in tombstones] == [tenant]
