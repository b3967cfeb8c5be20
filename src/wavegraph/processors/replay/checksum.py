"""Content checksums of a tenant's derived state, to compare a store with what the log rebuilds.

Graph (Neo4j): the tenant's node ids, every relationship (source, type, destination, weight, ts,
event id and its properties) and every tombstone (key, ts, source, type, destination), each set sorted
and hashed as canonical JSON (SHA-256). Node properties written by the analytics (``haa``) are not part
of it: they are derived from the graph, not from the edge log.

Vectors (transcripts in PostgreSQL, rows of the FAISS index) enter a digest through :func:`quantize`:
each component rounded to :data:`VECTOR_DECIMALS` decimals (steps of 0.001) as an integer. A vector
recomputed by MiniLM then hashes the same unless a component moved across a rounding boundary: noise of
``d`` per component flips a component with probability about ``2 d / 0.001``. Measured here the noise is
zero (the int8 model gives bit-identical vectors for a text whatever else is in its batch: 100 texts in
shuffled batches, max difference 0.0), so the rounding is a margin for other CPUs and onnxruntime
builds, and a real change of a text (its vector moves by ~0.1-1 in L2) always shows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from neo4j import AsyncDriver

__all__ = ["VECTOR_DECIMALS", "StoreChecksum", "graph_checksum", "quantize"]

VECTOR_DECIMALS = 3

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


def quantize(vector: object, decimals: int = VECTOR_DECIMALS) -> list[int]:
    """``round(v * 10**decimals)`` per component, as integers (``-0`` is ``0``); for hashing vectors
    whose float noise is below half a step. Raises ``ValueError`` for a NaN or infinite component."""
    values = np.asarray(vector, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError("a vector with a NaN or infinite component cannot be checksummed")
    return [int(x) for x in np.rint(values * 10.0**decimals).astype(np.int64)]
