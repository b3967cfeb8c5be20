"""After a scenario: is every accepted edge in Neo4j exactly once, with its own content?

The tenant's relationships are streamed from Neo4j and each is led back to its event
(:meth:`EdgeWorkload.index_of_edge`), so a run of millions of edges is checked without holding them.

``lost``: accepted events with no relationship; ``duplicates``: relationships beyond the first for one
edge plus nodes beyond the first for one (tenant, id); ``mismatched``: an edge whose type, weight, time
or event id differs from its event; ``unexpected``: relationships of the tenant that no accepted event
explains (e.g. an event answered 429 that was written anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from neo4j import AsyncDriver

from wavegraph.clients import neo4j_driver
from wavegraph.loadtest.workload import EdgeWorkload
from wavegraph.settings import Neo4jSettings

# One record per source node with its relationships collected by a subquery (so Neo4j holds one
# node's relationships at a time): the driver's per-record cost, not Neo4j, bounds checking millions.
EDGES = """
MATCH (a:Node {tenant: $tenant})
CALL (a) {
  MATCH (a)-[e]->(b:Node {tenant: $tenant})
  RETURN collect([b.id, type(e), e.weight, e.ts, e.event_id]) AS out
}
RETURN a.id AS src, out
"""
NODE_DUPLICATES = """
MATCH (n:Node {tenant: $tenant})
WITH n.id AS id, count(*) AS c WHERE c > 1
RETURN coalesce(sum(c - 1), 0) AS extra
"""
# Relationships first, in batches: DETACH DELETE of a node with millions of relationships would hold
# them all in one transaction.
DELETE_EDGES = "MATCH (:Node {tenant: $tenant})-[e]->() CALL (e) { DELETE e } IN TRANSACTIONS OF 10000 ROWS"
DELETE_NODES = "MATCH (n:Node {tenant: $tenant}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS"


@dataclass(frozen=True)
class GraphCheck:
    expected: int
    found: int
    lost: int
    duplicates: int
    mismatched: int
    unexpected: int
    examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicates == self.mismatched == self.unexpected == 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["examples"] = list(self.examples)
        return out


async def check_graph(driver: AsyncDriver, workload: EdgeWorkload, accepted: Iterable[int]) -> GraphCheck:
    """Compare the graph of ``workload.tenant`` with the events ``accepted`` of ``workload``."""
    want = set(accepted)
    seen: set[int] = set()
    duplicates = mismatched = unexpected = 0
    examples: list[str] = []
    async with driver.session() as session:
        result = await session.run(EDGES, tenant=workload.tenant)
        async for record in result:
            src = record["src"]
            for dst, rel, weight, ts, event_id in record["out"]:
                i = workload.index_of_edge(src, dst)
                if i is None or i not in want:
                    unexpected += 1
                    _example(examples, f"unexpected {src}->{dst} (event {event_id})")
                elif i in seen:
                    duplicates += 1
                    _example(examples, f"duplicate {src}->{dst}")
                else:
                    seen.add(i)
                    if (rel, weight, ts, event_id) != workload.props(i):
                        mismatched += 1
                        _example(examples, f"event {i}: {(rel, weight, ts, event_id)} != {workload.props(i)}")
    extra_nodes, _, _ = await driver.execute_query(NODE_DUPLICATES, tenant=workload.tenant)
    duplicates += int(extra_nodes[0]["extra"])
    lost = want - seen
    for i in sorted(lost)[:3]:
        _example(examples, f"lost event {i} ({workload.event_id(i)})")
    return GraphCheck(len(want), len(seen), len(lost), duplicates, mismatched, unexpected, tuple(examples))


async def count_edges(driver: AsyncDriver, tenant: str) -> int:
    records, _, _ = await driver.execute_query(
        "MATCH (:Node {tenant: $tenant})-[e]->() RETURN count(e) AS c", tenant=tenant
    )
    return int(records[0]["c"])


async def delete_tenant(driver: AsyncDriver, tenant: str) -> None:
    """Remove every relationship and node of ``tenant``, in batches."""
    async with driver.session() as session:  # CALL … IN TRANSACTIONS needs an auto-commit transaction
        for query in (DELETE_EDGES, DELETE_NODES):
            result = await session.run(query, tenant=tenant)
            await result.consume()


async def verify_run(
    neo4j: Neo4jSettings, workload: EdgeWorkload, accepted: Iterable[int], *, cleanup: bool = True
) -> GraphCheck:
    """:func:`check_graph` on the Neo4j of ``neo4j``; then delete the tenant's graph if ``cleanup``."""
    driver = neo4j_driver(neo4j)
    try:
        check = await check_graph(driver, workload, accepted)
        if cleanup:
            await delete_tenant(driver, workload.tenant)
        return check
    finally:
        await driver.close()


async def has_node_index(driver: AsyncDriver) -> bool:
    """Whether (:Node {tenant, id}) is indexed (the migrations' index or uniqueness constraint): without
    it every MERGE of the edge sink scans all nodes, and throughput falls as the graph grows."""
    records, _, _ = await driver.execute_query(
        "SHOW INDEXES YIELD labelsOrTypes, properties "
        "WHERE labelsOrTypes = ['Node'] AND properties = ['tenant', 'id'] RETURN count(*) AS c"
    )
    return int(records[0]["c"]) > 0


def _example(examples: list[str], text: str, limit: int = 5) -> None:
    if len(examples) < limit:
        examples.append(text)
