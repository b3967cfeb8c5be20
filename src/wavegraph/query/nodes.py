"""Nearest nodes of a tenant by their graph embedding (``node_embeddings.embedding``, pgvector L2).

The embedding is the graph job's Poincaré point (``graph.embedding_dim``, 64 by default): its norm carries
the node's depth in the hierarchy, so distances are Euclidean (``<->``, the ``vector_l2_ops`` ivfflat
index of V2025.07), as for ``node_haa`` in Neo4j. The query runs in a transaction that sets
``ivfflat.probes`` from ``settings.vector.probes`` with iterative scans on (a tenant filter that rejects
most scanned rows still yields ``k``), and re-sorts the relaxed order exactly. ``score = 1 / (1 + d)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import numpy as np

__all__ = ["NodeNeighbour", "nearest_nodes", "node_embedding"]

_NEAREST = """
WITH hits AS MATERIALIZED (
    SELECT node, pagerank, embedding <-> $2 AS distance FROM node_embeddings
    WHERE tenant = $1 AND embedding IS NOT NULL ORDER BY embedding <-> $2 LIMIT {k}
) SELECT * FROM hits ORDER BY distance, node
"""


@dataclass(frozen=True, slots=True)
class NodeNeighbour:
    node: str
    pagerank: float | None
    distance: float

    @property
    def score(self) -> float:
        """``1 / (1 + distance)``: 1 for the query point itself, higher is nearer."""
        return 1.0 / (1.0 + self.distance)


async def nearest_nodes(
    pool: asyncpg.Pool, tenant: str, vector: np.ndarray, k: int, *, probes: int
) -> list[NodeNeighbour]:
    """The ``k`` nodes of ``tenant`` nearest to ``vector`` (already checked: dimension, finite), nearest
    first."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT set_config('ivfflat.probes', $1, true),"
            " set_config('ivfflat.iterative_scan', 'relaxed_order', true)",
            str(int(probes)),
        )
        rows = await conn.fetch(_NEAREST.format(k=k), tenant, vector)
    return [
        NodeNeighbour(
            r["node"], None if r["pagerank"] is None else float(r["pagerank"]), float(r["distance"])
        )
        for r in rows
    ]


async def node_embedding(pool: asyncpg.Pool, tenant: str, node: str) -> np.ndarray | None:
    """The stored embedding of ``tenant``'s ``node``, or None (no such node, or not embedded yet)."""
    value = await pool.fetchval(
        "SELECT embedding FROM node_embeddings WHERE tenant = $1 AND node = $2", tenant, node
    )
    return None if value is None else np.asarray(value.to_numpy(), dtype=np.float32)
