"""``GET /v1/explain/{node}`` against the real Neo4j and PostgreSQL, with the Les Misérables graph.

Each test stores graphs the way the pipeline does (edges through the edge sink's own ``UPSERT``, node
rows through :class:`~wavegraph.sinks.node_embeddings.NodeStore` with the graph job's embeddings) under
fresh tenants reached through fresh API keys, and deletes them afterwards.

The snapshot (``snapshots/explain_les_miserables.json``) pins the JSON answers (without the SVG, which
is checked for content instead; floats rounded to 6 decimals). After a deliberate change, rewrite it
with ``WAVEGRAPH_UPDATE_SNAPSHOTS=1`` and review the diff.
"""

from __future__ import annotations

import base64
import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import networkx as nx
import numpy as np
import orjson
import pytest
from test_ingest import api

from wavegraph.clients import neo4j_driver, pg_pool
from wavegraph.events import EdgeEvent
from wavegraph.processors.graph import poincare as pb
from wavegraph.processors.graph.haa import haa_from_edges, poincare_from_edges
from wavegraph.query.explain import TIE
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import UPSERT, edge_row
from wavegraph.sinks.node_embeddings import NodeRows, NodeStore

pytestmark = pytest.mark.services

SNAPSHOT = Path(__file__).parent / "snapshots" / "explain_les_miserables.json"
REL = "APPEARS_WITH"
Edge = tuple[str, str, float]


def les_miserables() -> list[Edge]:
    return [(str(u), str(v), float(w)) for u, v, w in nx.les_miserables_graph().edges(data="weight")]


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def store_graph(settings: Settings, tenant: str, edges: Iterable[Edge], *, embed: bool = True) -> None:
    """Edges into Neo4j (the edge sink's query), then what the graph job stores for them."""
    edges = list(edges)
    rows = [
        edge_row(EdgeEvent(tenant=tenant, src=s, dst=d, rel=REL, weight=w, ts=1000.0 + i))
        for i, (s, d, w) in enumerate(edges)
    ]
    driver = neo4j_driver(settings.neo4j)
    pool = await pg_pool(settings.postgres, max_size=1)
    try:
        await driver.execute_query(UPSERT.format(rel=REL), rows=rows, database_=settings.neo4j.database)
        if not embed:
            return
        dim = settings.graph.embedding_dim
        ids, points = poincare_from_edges(edges, dim=dim, curvature=settings.graph.curvature)
        _, haa_points, _ = haa_from_edges(edges, dim=dim, curvature=settings.graph.curvature)
        graph = nx.Graph()
        graph.add_weighted_edges_from(edges)
        pagerank = nx.pagerank(graph, weight=None)
        node_rows = NodeRows(
            tenant,
            1,
            ids,
            np.array([pagerank[i] for i in ids]),
            pb.project(points.astype(np.float32)),
            pb.project(haa_points.astype(np.float32)),
        )
        assert await NodeStore(driver, pool).write(node_rows) == 0
    finally:
        await pool.close()
        await driver.close()


async def delete_tenants(settings: Settings, tenants: Iterable[str]) -> None:
    names = list(tenants)
    driver = neo4j_driver(settings.neo4j)
    pool = await pg_pool(settings.postgres, max_size=1)
    try:
        await driver.execute_query(
            "MATCH (n:Node) WHERE n.tenant IN $t DETACH DELETE n", t=names, database_=settings.neo4j.database
        )
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM node_embeddings WHERE tenant = ANY($1::text[])", names)
    finally:
        await pool.close()
        await driver.close()


@pytest.fixture
async def tenants(services: Settings) -> AsyncIterator[list[Tenant]]:
    """Two fresh tenants, each with its own (non-development) API key; their data is deleted after."""
    run = uuid.uuid4().hex[:8]
    made = [Tenant(f"explain-{run}-{i}", f"explain-key-{run}-{i}") for i in range(2)]
    yield made
    await delete_tenants(services, [t.name for t in made])


def with_keys(settings: Settings, tenants: Iterable[Tenant]) -> Settings:
    keys = {**settings.http.api_keys, **{t.key: t.name for t in tenants}}
    return settings.model_copy(update={"http": settings.http.model_copy(update={"api_keys": keys})})


@pytest.fixture
async def client(services: Settings, tenants: list[Tenant]) -> AsyncIterator[httpx.AsyncClient]:
    async with api(with_keys(services, tenants)) as c:
        yield c


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


async def explain(client: httpx.AsyncClient, tenant: Tenant, node: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/v1/explain/{node}", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ----------------------------------------------------------------------------------------------- tests


async def test_les_miserables_answers_match_the_snapshot(
    services: Settings, tenants: list[Tenant], client: httpx.AsyncClient
) -> None:
    await store_graph(services, tenants[0].name, les_miserables())
    answers = {}
    for node, params in [("Valjean", {}), ("Napoleon", {"hops": 2, "limit": 12}), ("Fantine", {"limit": 5})]:
        body = await explain(client, tenants[0], node, **params)
        svg = base64.b64decode(body.pop("svg")).decode()
        root = ET.fromstring(svg)  # well-formed XML
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert f">{node}</text>" in svg and "attention of" in svg  # labelled, with a legend
        answers[f"{node} {params}"] = rounded(body)
    if os.environ.get("WAVEGRAPH_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_bytes(orjson.dumps(answers, option=orjson.OPT_INDENT_2) + b"\n")
    assert answers == orjson.loads(SNAPSHOT.read_bytes())


async def test_attention_is_the_graph_jobs_and_sums_to_one(
    services: Settings, tenants: list[Tenant], client: httpx.AsyncClient
) -> None:
    edges = les_miserables()
    await store_graph(services, tenants[0].name, edges)
    body = await explain(client, tenants[0], "Valjean", limit=1000)
    graph = nx.Graph()
    graph.add_weighted_edges_from(edges)
    assert {a["dst"] for a in body["attn"]} == set(graph["Valjean"])
    assert sum(a["weight"] for a in body["attn"]) == pytest.approx(1.0, abs=1e-9)
    # the attention the graph maths computes over the whole graph (float64 points, not the stored ones)
    ids, _, attention = haa_from_edges(
        edges, dim=services.graph.embedding_dim, curvature=services.graph.curvature
    )
    row = attention.getrow(ids.index("Valjean"))
    expected = {ids[j]: w for j, w in zip(row.indices, row.data, strict=True)}
    got = {a["dst"]: a["weight"] for a in body["attn"]}
    assert max(abs(got[k] - expected[k]) for k in expected) < 1e-5
    weights = [a["weight"] for a in body["attn"]]
    dsts = [a["dst"] for a in body["attn"]]
    # hop 1 in attention order; weights equal within TIE (float32 noise) in id order
    for (w1, d1), (w2, d2) in pairwise(zip(weights, dsts, strict=True)):
        tied = abs(w1 - w2) <= TIE * max(w1, w2)
        assert (tied and d1 < d2) or (not tied and w1 > w2), (d1, w1, d2, w2)
    degree = {n["id"]: n["degree"] for n in body["nodes"]}
    assert degree["Valjean"] == graph.degree("Valjean")


async def test_limit_keeps_the_highest_attention_and_every_edge_between_kept_nodes(
    services: Settings, tenants: list[Tenant], client: httpx.AsyncClient
) -> None:
    await store_graph(services, tenants[0].name, les_miserables())
    full = await explain(client, tenants[0], "Valjean", limit=1000)
    top = await explain(client, tenants[0], "Valjean", limit=5)
    assert top["attn"] == full["attn"][:5]
    kept = {n["id"] for n in top["nodes"]}
    assert kept == {"Valjean", *(a["dst"] for a in full["attn"][:5])}
    assert top["edges"] == [e for e in full["edges"] if e["src"] in kept and e["dst"] in kept]
    two = await explain(client, tenants[0], "Valjean", hops=2, limit=60)
    assert len(two["nodes"]) == 61
    assert two["attn"] == full["attn"]  # hop 1 first, all 36; then hop-2 nodes by PageRank
    hop2 = [n for n in two["nodes"][37:]]
    assert [n["pagerank"] for n in hop2] == sorted((n["pagerank"] for n in hop2), reverse=True)


async def test_two_tenants_with_the_same_node_id_see_only_their_own_neighbourhood(
    services: Settings, tenants: list[Tenant], client: httpx.AsyncClient
) -> None:
    a, b = tenants
    await store_graph(services, a.name, les_miserables())
    await store_graph(services, b.name, [("Valjean", "Cosette-b", 1.0), ("Valjean", "Only-b", 2.0)])
    seen_a = await explain(client, a, "Valjean", hops=2, limit=1000)
    seen_b = await explain(client, b, "Valjean", hops=2, limit=1000)
    assert {n["id"] for n in seen_b["nodes"]} == {"Valjean", "Cosette-b", "Only-b"}
    assert "Only-b" not in {n["id"] for n in seen_a["nodes"]}
    assert len(seen_a["nodes"]) > 36
    assert {e["src"] for e in seen_b["edges"]} | {e["dst"] for e in seen_b["edges"]} <= {
        "Valjean",
        "Cosette-b",
        "Only-b",
    }
    for node, tenant in [("Only-b", a), ("Javert", b)]:  # the other tenant's node is unknown
        response = await client.get(f"/v1/explain/{node}", headers=tenant.headers)
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_node"


async def test_bad_requests_are_4xx_with_a_json_reason(
    services: Settings, tenants: list[Tenant], client: httpx.AsyncClient
) -> None:
    await store_graph(services, tenants[0].name, [("a/b", "c", 1.0)], embed=False)
    headers = tenants[0].headers
    for params in ({"hops": 3}, {"hops": "x"}, {"limit": 0}, {"limit": services.read.explain_max_limit + 1}):
        response = await client.get("/v1/explain/c", params=params, headers=headers)
        assert response.status_code == 400, params
        assert response.json()["error"] == "invalid_parameter"
    assert (await client.get("/v1/explain/c")).status_code == 401
    missing = await client.get("/v1/explain/nobody", headers=headers)
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    # an id with a slash, and a node without stored embeddings: no attention yet, the edges still show
    body = await explain(client, tenants[0], "a%2Fb")
    assert body["node"] == "a/b" and body["attn"] == []
    assert body["edges"] == [{"src": "a/b", "dst": "c", "rel": REL, "weight": 1.0}]


async def test_postgres_down_is_a_503_with_a_json_reason(services: Settings, tenants: list[Tenant]) -> None:
    """A real fault: the pool points at a port nothing listens on (Neo4j stays reachable)."""
    await store_graph(services, tenants[0].name, [("x", "y", 1.0)], embed=False)
    postgres = services.postgres.model_copy(update={"port": 1, "dsn": None})
    async with api(with_keys(services, tenants).model_copy(update={"postgres": postgres})) as client:
        response = await client.get("/v1/explain/x", headers=tenants[0].headers)
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    assert response.headers["Retry-After"] == "5"


async def test_openapi_describes_the_route(services: Settings, client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/explain/{node}"]["get"]
    assert {"200", "400", "401", "404", "503"} <= set(op["responses"])
    assert "example" in op["responses"]["200"]["content"]["application/json"]
