"""Content checksums of a tenant's derived state, to compare a store with what the log rebuilds.

Graph (Neo4j): the tenant's node ids, every relationship (source, type, destination, weight, ts,
event id and its properties) and every tombstone (key, ts, source, type, destination), each set sorted
and hashed as canonical JSON (SHA-256). Node properties written by the analytics (``haa``) are not part
of it: they are derived from the graph, not from the edge log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from neo4j import AsyncDriver

__all__ = ["StoreChecksum", "graph_checksum"]

_NODES = "MATCH (n:Node {tenant: $tenant}) RETURN n.id AS id ORDER BY id"
_EDGES = """
MATCH (a:Node {tenant: $tenant})-[e]->(b:Node {tenant: $tenant})
RETURN a.id AS src, type(e) AS rel, b.id AS dst, properties(e) AS props
ORDER BY src, rel, dst
"""
_TOMBSTONES = """
MATCH (t:EdgeTombstone {tenant: $tenant})
RETURN t.key AS key, t.ts AS ts, t.src AS src, t.rel AS rel, t.dst AS dst ORDER BY key
"""


@dataclass(frozen=True)
class StoreChecksum:
    """What was counted and the digest over all of it."""

    store: str
    tenant: str
    counts: dict[str, int]
    digest: str

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "tenant": self.tenant, "counts": self.counts, "digest": self.digest}


async def graph_checksum(driver: AsyncDriver, tenant: str, database: str | None = None) -> StoreChecksum:
    """The tenant's graph in Neo4j, as described in the module docstring."""
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    async with driver.session(database=database) as session:
        for name, query in (("nodes", _NODES), ("edges", _EDGES), ("tombstones", _TOMBSTONES)):
            result = await session.run(query, tenant=tenant)
            rows = [record.data() async for record in result]
            counts[name] = len(rows)
            digest.update(name.encode())
            digest.update(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS))
    return StoreChecksum("neo4j", tenant, counts, digest.hexdigest())
