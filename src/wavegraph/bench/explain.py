"""``wavegraph bench explain``: p95 of ``GET /v1/explain`` next to the bare Cypher of the same neighbourhood.

Two graphs are stored under a fresh tenant the way the pipeline stores them (edges with the edge
sink's ``UPSERT``, node rows with :class:`~wavegraph.sinks.node_embeddings.NodeStore` holding the
graph job's Poincaré points): Les Misérables (explained node ``Valjean``, degree 36) and a hub joined
to ``degree`` leaves that form a ring (1,000 leaves with ``--quick``, 1,000 and 10,000 otherwise).

For each node and ``hops`` in (1, 2), with the default ``limit``:

- ``p95_ms``: the endpoint through the in-process app (httpx ASGI transport: routing, auth, both
  stores, attention, SVG, JSON), one request at a time;
- ``bare_p95_ms``: the same Cypher queries run directly on the driver (neighbour ids, then the hop-2
  query when it applies, then the subgraph of the same node ids) — the neighbourhood without
  PostgreSQL, attention, picture or HTTP.

``ratio`` = p95_ms ÷ bare_p95_ms per row; the headline ``ratio`` is the largest (goal ≤ 3). Both are
measured alternately in the same run after warm-up requests. The tenant is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import networkx as nx
import numpy as np

from wavegraph.clients import neo4j_driver, pg_pool
from wavegraph.events import EdgeEvent
from wavegraph.processors.graph import poincare as pb
from wavegraph.processors.graph.haa import haa_from_edges, poincare_from_edges
from wavegraph.query.explain import HOP2, NEIGHBOURS, SUBGRAPH
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import UPSERT, edge_row
from wavegraph.sinks.node_embeddings import NodeRows, NodeStore

REL = "APPEARS_WITH"
CHUNK = 5000
Edge = tuple[str, str, float]


def run_explain_bench(settings: Settings, quick: bool = False, out: Path | None = None) -> dict[str, Any]:
    """Run the bench on ``settings``' Neo4j and PostgreSQL; write and print the report; return it."""
    degrees = [1000] if quick else [1000, 10_000]
    requests = 40 if quick else 200
    report = asyncio.run(_run(settings, degrees, requests, quick))
    write_report(report, out)
    return report


def _graphs(degrees: list[int]) -> list[tuple[str, list[Edge]]]:
    les_mis = [(str(u), str(v), float(w)) for u, v, w in nx.les_miserables_graph().edges(data="weight")]
    out = [("Valjean", les_mis)]
    for d in degrees:
        hub = f"hub{d}"
        leaves = [f"{hub}-leaf{i}" for i in range(d)]
        edges = [(hub, leaf, 1.0) for leaf in leaves]
        edges += [(leaves[i], leaves[(i + 1) % d], 1.0) for i in range(d)]
        out.append((hub, edges))
    return out


async def _store(settings: Settings, tenant: str, edges: list[Edge]) -> None:
    driver = neo4j_driver(settings.neo4j)
    pool = await pg_pool(settings.postgres, max_size=1)
    try:
        for lo in range(0, len(edges), CHUNK):
            rows = [
                edge_row(EdgeEvent(tenant=tenant, src=s, dst=d, rel=REL, weight=w, ts=1000.0 + lo + i))
                for i, (s, d, w) in enumerate(edges[lo : lo + CHUNK])
            ]
            await driver.execute_query(UPSERT.format(rel=REL), rows=rows, database_=settings.neo4j.database)
        g = settings.graph
        ids, points = poincare_from_edges(edges, dim=g.embedding_dim, curvature=g.curvature)
        _, haa_points, _ = haa_from_edges(edges, dim=g.embedding_dim, curvature=g.curvature)
        pagerank = nx.pagerank(nx.Graph([(s, d) for s, d, _ in edges]))
        rows_ = NodeRows(
            tenant,
            1,
            ids,
            np.array([pagerank[i] for i in ids]),
            pb.project(points.astype(np.float32)),
            pb.project(haa_points.astype(np.float32)),
        )
        await NodeStore(driver, pool).write(rows_)
    finally:
        await pool.close()
        await driver.close()


async def _delete(settings: Settings, tenant: str) -> None:
    driver = neo4j_driver(settings.neo4j)
    pool = await pg_pool(settings.postgres, max_size=1)
    try:
        async with driver.session(database=settings.neo4j.database) as session:  # implicit transaction
            result = await session.run(
                "MATCH (n:Node {tenant: $t}) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS",
                t=tenant,
            )
            await result.consume()
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM node_embeddings WHERE tenant = $1", tenant)
    finally:
        await pool.close()
        await driver.close()


def _p95(samples: list[float]) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, 95))


async def _run(settings: Settings, degrees: list[int], requests: int, quick: bool) -> dict[str, Any]:
    from wavegraph.http import create_app

    tenant = f"bench-explain-{uuid.uuid4().hex[:8]}"
    key = f"bench-explain-key-{uuid.uuid4().hex[:8]}"
    http = settings.http.model_copy(update={"api_keys": {**settings.http.api_keys, key: tenant}})
    app_settings = settings.model_copy(update={"http": http})
    limit = settings.read.explain_default_limit
    db = settings.neo4j.database
    graphs = _graphs(degrees)
    rows: list[dict[str, Any]] = []
    try:
        for _, edges in graphs:
            await _store(settings, tenant, edges)
        app = create_app(app_settings)
        driver = neo4j_driver(settings.neo4j)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://wavegraph") as client:
                headers = {"Authorization": f"Bearer {key}"}
                for node, edges in graphs:
                    degree = len(
                        {d for s, d, _ in edges if s == node} | {s for s, d, _ in edges if d == node}
                    )
                    for hops in (1, 2):

                        async def endpoint(node: str = node, hops: int = hops) -> None:
                            r = await client.get(
                                f"/v1/explain/{node}", params={"hops": hops, "limit": limit}, headers=headers
                            )
                            r.raise_for_status()

                        async def bare(node: str = node, hops: int = hops) -> None:
                            await _bare(driver, tenant, node, hops, limit, db)

                        api_s, bare_s = await _alternate(endpoint, bare, requests)
                        p95, bare_p95 = _p95(api_s), _p95(bare_s)
                        rows.append(
                            {
                                "case": f"{node}_hops{hops}",
                                "hops": hops,
                                "degree": degree,
                                "limit": limit,
                                "p50_ms": float(np.median(api_s) * 1000),
                                "p95_ms": p95,
                                "bare_p50_ms": float(np.median(bare_s) * 1000),
                                "bare_p95_ms": bare_p95,
                                "ratio": p95 / bare_p95,
                            }
                        )
        await driver.close()
    finally:
        await _delete(settings, tenant)
    params = {"degrees": degrees, "requests": requests, "limit": limit, "quick": quick}
    return build_report("explain", params, rows, max(r["ratio"] for r in rows))


async def _bare(driver: Any, tenant: str, node: str, hops: int, limit: int, db: str | None) -> None:
    """The neighbourhood straight from Neo4j: the queries :func:`~wavegraph.query.explain.explain` runs."""
    records, _, _ = await driver.execute_query(
        NEIGHBOURS, tenant=tenant, node=node, database_=db, routing_="r"
    )
    neighbours = sorted(records[0]["ids"])
    hop1 = neighbours[:limit]
    ids = [node, *hop1]
    if hops == 2 and len(hop1) < limit:
        records, _, _ = await driver.execute_query(
            HOP2, tenant=tenant, hop1=hop1, seen=[node, *neighbours], limit=limit - len(hop1), database_=db
        )
        ids.extend(r["id"] for r in records)
    await driver.execute_query(SUBGRAPH, tenant=tenant, ids=ids, database_=db, routing_="r")


async def _alternate(
    a: Callable[[], Awaitable[None]], b: Callable[[], Awaitable[None]], n: int
) -> tuple[list[float], list[float]]:
    for _ in range(5):  # warm-up: plans cached, pools and connections open
        await a()
        await b()
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(n):
        for j, f in ((0, a), (1, b)) if i % 2 == 0 else ((1, b), (0, a)):
            started = time.perf_counter()
            await f()
            times[j].append(time.perf_counter() - started)
    return times
