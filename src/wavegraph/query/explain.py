"""Explain a node: its neighbourhood in Neo4j and the HAA attention it gave its neighbours.

:func:`explain` answers for one tenant (the caller's API key decides which; every query names it):

1. Neo4j: the node (absent → :class:`UnknownNode`) and the ids of its distinct neighbours (either
   direction, any relationship type, self-loops left out — the neighbourhood HAA uses), collected in
   the database into one list (no relationship or property is sent for them).
2. PostgreSQL: for those neighbours, ``⟨x_v, x_u⟩`` and ``‖x_u‖`` of the stored Poincaré points
   (``node_embeddings.embedding``), computed by pgvector and returned as three arrays in one row; the
   attention of every neighbour is then :func:`~wavegraph.query.attention.star_attention` (the graph
   job's own :func:`~wavegraph.processors.graph.haa.haa`). The weights sum to 1 over the neighbours
   that have a stored embedding; neighbours stored after the last recompute get none.
3. ``limit`` caps the neighbourhood (the explained node is not counted): hop-1 neighbours by attention,
   highest first (ties and neighbours without a weight: by id); with ``hops=2`` the rest of the budget
   goes to hop-2 nodes by PageRank, highest first, ordered and limited in Cypher.
4. Neo4j: every relationship between two nodes of the answer (``src → dst`` as stored, its type and
   weight), each node's PageRank (as the graph job stored it; ``None`` before the first recompute) and
   degree (its number of relationships, in and out, read from Neo4j's degree counts).

The answer is deterministic: nodes in the order explained node, hop 1, hop 2; edges sorted by
(src, dst, rel); ``attn`` in node order. Neighbours whose weights differ by less than ``TIE`` (relative)
count as tied and go by id: the weights come from float32 embeddings, so nodes in the same position
(three leaves of one hub) get weights equal but for the last bits, and which bits depends on the
machine's numpy and BLAS; without the tolerance the order of such nodes, and which of them a ``limit``
keeps, changed from one installation to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import numpy as np
from neo4j import AsyncDriver

from wavegraph.errors import WavegraphError
from wavegraph.query.attention import star_attention

__all__ = [
    "EMBEDDINGS",
    "HOP2",
    "NEIGHBOURS",
    "SUBGRAPH",
    "TIE",
    "Explanation",
    "UnknownNode",
    "by_attention",
    "explain",
]

Hops = Literal[1, 2]
TIE = 1e-5  # relative: far above float32 noise in the weights (~1e-7), far below a real difference

NEIGHBOURS = """
MATCH (n:Node {tenant: $tenant, id: $node})
RETURN COLLECT { MATCH (n)--(m:Node) WHERE m <> n AND m.tenant = $tenant RETURN DISTINCT m.id } AS ids
"""

HOP2 = """
MATCH (h:Node {tenant: $tenant})--(m:Node {tenant: $tenant})
WHERE h.id IN $hop1 AND NOT m.id IN $seen
WITH DISTINCT m
ORDER BY m.pagerank DESC, m.id
LIMIT $limit
RETURN m.id AS id
"""

SUBGRAPH = """
UNWIND $ids AS id
MATCH (a:Node {tenant: $tenant, id: id})
RETURN a.id AS id, a.pagerank AS pagerank, COUNT { (a)--() } AS degree,
       COLLECT { MATCH (a)-[r]->(b:Node {tenant: $tenant}) WHERE b.id IN $ids
                 RETURN [b.id, type(r), r.weight] } AS out
"""

EMBEDDINGS = """
SELECT vector_norm(v.embedding) AS center_norm, a.nodes, a.dots, a.norms
FROM node_embeddings v
CROSS JOIN LATERAL (
    SELECT array_agg(e.node) AS nodes,
           array_agg(-(e.embedding <#> v.embedding)) AS dots,
           array_agg(vector_norm(e.embedding)) AS norms
    FROM node_embeddings e
    WHERE e.tenant = $1 AND e.node = ANY($3::text[]) AND e.embedding IS NOT NULL
) a
WHERE v.tenant = $1 AND v.node = $2 AND v.embedding IS NOT NULL
"""


class UnknownNode(WavegraphError):
    """The tenant has no node with this id (another tenant's node is unknown too)."""


@dataclass(frozen=True)
class Explanation:
    """The JSON body of ``/v1/explain`` without the picture (see :meth:`to_json`)."""

    node: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    attn: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "nodes": self.nodes, "edges": self.edges, "attn": self.attn}


async def explain(
    driver: AsyncDriver,
    pool: asyncpg.Pool,
    tenant: str,
    node: str,
    *,
    hops: Hops = 1,
    limit: int = 50,
    curvature: float = -1.0,
    temperature: float = 1.0,
    database: str | None = None,
) -> Explanation:
    """Explain ``node`` of ``tenant`` (module docstring); raise :class:`UnknownNode` if it has none.

    Store errors (Neo4j or PostgreSQL unreachable) propagate as the drivers raise them.
    """
    if hops not in (1, 2) or limit < 1:
        raise ValueError(f"hops must be 1 or 2 and limit ≥ 1, got {hops!r} and {limit!r}")
    records, _, _ = await driver.execute_query(
        NEIGHBOURS, tenant=tenant, node=node, database_=database, routing_="r"
    )
    if not records:
        raise UnknownNode(f"no node {node!r}")
    neighbours: list[str] = sorted(records[0]["ids"])
    weights = await _attention(pool, tenant, node, neighbours, curvature, temperature)
    hop1 = by_attention(neighbours, weights)[:limit]
    ids = [node, *hop1]
    if hops == 2 and len(hop1) < limit and hop1:
        seen = [node, *neighbours]
        records, _, _ = await driver.execute_query(
            HOP2,
            tenant=tenant,
            hop1=hop1,
            seen=seen,
            limit=limit - len(hop1),
            database_=database,
            routing_="r",
        )
        ids.extend(r["id"] for r in records)
    return await _subgraph(driver, tenant, ids, weights, database)


def by_attention(ids: Sequence[str], weights: dict[str, float]) -> list[str]:
    """``ids`` by weight, highest first (ids without one last); weights within ``TIE`` (relative) of the
    first of a run are tied and ordered by id."""
    order = sorted(ids, key=lambda u: (-weights.get(u, -1.0), u))
    out: list[str] = []
    run: list[str] = []
    top = 0.0
    for u in order:
        w = weights.get(u, -1.0)
        if run and top - w > TIE * max(abs(top), abs(w)):
            out.extend(sorted(run))
            run = []
        if not run:
            top = w
        run.append(u)
    out.extend(sorted(run))
    return out


async def _attention(
    pool: asyncpg.Pool,
    tenant: str,
    node: str,
    neighbours: Sequence[str],
    curvature: float,
    temperature: float,
) -> dict[str, float]:
    """Neighbour id → ``α_vu`` over the neighbours with a stored embedding (empty if ``v`` has none)."""
    if not neighbours:
        return {}
    async with pool.acquire() as conn:
        row = await conn.fetchrow(EMBEDDINGS, tenant, node, list(neighbours))
    if row is None or not row["nodes"]:
        return {}
    alpha = star_attention(
        float(row["center_norm"]),
        np.asarray(row["dots"], dtype=np.float64),
        np.asarray(row["norms"], dtype=np.float64),
        curvature=curvature,
        temperature=temperature,
    )
    return dict(zip(row["nodes"], alpha.tolist(), strict=True))


async def _subgraph(
    driver: AsyncDriver, tenant: str, ids: list[str], weights: dict[str, float], database: str | None
) -> Explanation:
    records, _, _ = await driver.execute_query(
        SUBGRAPH, tenant=tenant, ids=ids, database_=database, routing_="r"
    )
    found = {r["id"]: r for r in records}
    nodes = [
        {"id": i, "pagerank": found[i]["pagerank"], "degree": int(found[i]["degree"])}
        for i in ids
        if i in found
    ]
    edges = sorted(
        (
            {"src": r["id"], "dst": dst, "rel": rel, "weight": weight}
            for r in records
            for dst, rel, weight in r["out"]
        ),
        key=lambda e: (e["src"], e["dst"], e["rel"]),
    )
    center = ids[0]
    attn = [
        {"src": center, "dst": n["id"], "weight": weights[n["id"]]} for n in nodes[1:] if n["id"] in weights
    ]
    return Explanation(node=center, nodes=nodes, edges=edges, attn=attn)
