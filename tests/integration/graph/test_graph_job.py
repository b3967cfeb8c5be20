"""The embedding job (``wavegraph run graph``) against the real Kafka, Neo4j and PostgreSQL.

One scenario on Les Misérables (77 nodes, 254 undirected edges, sent in both directions; weights ≥ 2 are
split over two relationship types, which the job sums back): PageRank in the NodeEvents against
``networkx.pagerank``; HAA stored in Neo4j and PostgreSQL for every node; a restart (same group)
that rebuilds its state from the topic and applies deletions; a replay (new group) that stores the same
rows again. Tenant ``acme`` (a known one), isolated by a unique node-id prefix, cleaned up afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import networkx as nx
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pgvector.asyncpg import register_vector

from wavegraph.events import NodeEvent
from wavegraph.migrations import apply_all
from wavegraph.processors.edges import neo4j_driver
from wavegraph.processors.graph_job import run_graph
from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services

TENANT = "acme"
DELETED = 10  # undirected edges deleted after the first run
PARTITIONS = 3


@pytest.fixture(scope="module")
def migrated(services: Settings) -> Settings:
    apply_all(services)  # idempotent: node_embeddings and the Node.haa vector index exist afterwards
    return services


@pytest.fixture
def prefix() -> str:
    return f"gj{uuid.uuid4().hex[:10]}-"


@pytest.fixture
async def job_settings(migrated: Settings, prefix: str) -> AsyncIterator[Settings]:
    suffix = uuid.uuid4().hex[:10]
    topics = migrated.kafka.topics.model_copy(
        update={name: f"test.graph.{name}.{suffix}" for name in ("edges", "nodes", "dlq")}
    )
    settings = migrated.model_copy(
        update={
            "kafka": migrated.kafka.model_copy(update={"topics": topics}),
            "runtime": migrated.runtime.model_copy(update={"group_prefix": f"test-graph-{suffix}"}),
            # recompute after every batch that changes the graph, so the final graph's HAA gets stored
            "graph": migrated.graph.model_copy(update={"recompute_fraction": 1e-9}),
        }
    )
    names = [topics.edges, topics.nodes, topics.dlq]
    await ensure_topics(settings.kafka, names, partitions=PARTITIONS)
    yield settings
    await delete_topics(settings.kafka, names)
    driver = neo4j_driver(settings.neo4j)
    try:
        await driver.execute_query(
            "MATCH (n:Node {tenant: $t}) WHERE n.id STARTS WITH $p DETACH DELETE n", t=TENANT, p=prefix
        )
    finally:
        await driver.close()
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        await conn.execute(
            "DELETE FROM node_embeddings WHERE tenant = $1 AND starts_with(node, $2)", TENANT, prefix
        )
    finally:
        await conn.close()


# -- the graph and its events -------------------------------------------------------------------------
def les_miserables(prefix: str) -> nx.Graph:
    return nx.relabel_nodes(nx.les_miserables_graph(), {v: prefix + v for v in nx.les_miserables_graph()})


def edge_values(graph: nx.Graph, op: str, ts: float) -> list[bytes]:
    """Both directions of every edge; a weight w ≥ 2 is sent as LINKS (w − 1) + KNOWS (1)."""
    out = []
    for u, v, w in graph.edges(data="weight"):
        parts = [("LINKS", w - 1.0), ("KNOWS", 1.0)] if w >= 2 else [("LINKS", float(w))]
        for src, dst in ((u, v), (v, u)):
            for rel, weight in parts:
                event = {"tenant": TENANT, "src": src, "dst": dst, "rel": rel, "weight": weight, "ts": ts}
                out.append(orjson.dumps({**event, "op": op}))
    return out


def pagerank_l1(scores: dict[str, float], graph: nx.DiGraph) -> float:
    """L1 distance to networkx's PageRank after normalising ``scores`` over ``graph``'s nodes."""
    if set(scores) != set(graph):
        return float("inf")
    expected = nx.pagerank(graph, alpha=0.85, tol=1e-14, max_iter=10_000, weight="weight")
    total = sum(scores.values())
    return sum(abs(scores[v] / total - expected[v]) for v in graph)


# -- observing the outputs ----------------------------------------------------------------------------
class NodeTopic:
    """The latest NodeEvent per node on the nodes topic (keys are ``tenant/node``: one partition each).

    Each poll uses a short-lived consumer, so no consumer task of the test's outlives a poll."""

    def __init__(self, settings: Settings, partitions: int) -> None:
        self.kafka = settings.kafka
        self.positions = {TopicPartition(settings.kafka.topics.nodes, p): 0 for p in range(partitions)}
        self.latest: dict[str, NodeEvent] = {}
        self.count = 0

    async def poll(self) -> dict[str, float]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(list(self.positions))
            ends = await consumer.end_offsets(list(self.positions))
            for tp, position in self.positions.items():
                consumer.seek(tp, position)
            while any(self.positions[tp] < ends[tp] for tp in self.positions):
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for rec in records:
                        event = NodeEvent.model_validate_json(rec.value)
                        assert rec.key == f"{event.tenant}/{event.node}".encode()
                        self.latest[event.node] = event
                        self.count += 1
                    self.positions[tp] = records[-1].offset + 1
        finally:
            await consumer.stop()
        return {node: ev.pagerank for node, ev in self.latest.items()}


@dataclass
class Stored:
    version: int
    pagerank: float
    haa: np.ndarray
    embedding: np.ndarray


async def pg_rows(settings: Settings, prefix: str) -> dict[str, Stored]:
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        await register_vector(conn)
        records = await conn.fetch(
            "SELECT node, version, pagerank, haa, embedding FROM node_embeddings "
            "WHERE tenant = $1 AND starts_with(node, $2)",
            TENANT,
            prefix,
        )
    finally:
        await conn.close()
    return {
        r["node"]: Stored(r["version"], r["pagerank"], vector(r["haa"]), vector(r["embedding"]))
        for r in records
    }


def vector(value: object) -> np.ndarray:
    """A pgvector value as a float32 array (the codec gives ``Vector`` objects or arrays by version)."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy is not None else value, dtype=np.float32)


async def neo4j_nodes(settings: Settings, prefix: str) -> list[tuple[str, list[float] | None, int | None]]:
    driver = neo4j_driver(settings.neo4j)
    try:
        records, _, _ = await driver.execute_query(
            "MATCH (n:Node {tenant: $t}) WHERE n.id STARTS WITH $p "
            "RETURN n.id AS id, n.haa AS haa, n.embedding_version AS v",
            t=TENANT,
            p=prefix,
        )
    finally:
        await driver.close()
    return [(r["id"], r["haa"], r["v"]) for r in records]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def run_job_until(settings: Settings, done: Callable[[], Awaitable[bool]], what: str) -> dict[str, int]:
    """Run the job until ``done``; stop it; check that it left no task behind; return its counters."""
    before = asyncio.all_tasks()
    stop = asyncio.Event()
    job = asyncio.create_task(run_graph(settings, stop))
    try:

        async def check() -> bool:
            if job.done():
                job.result()
                raise AssertionError("the job stopped on its own")
            return await done()

        await eventually(check, what)
    finally:
        stop.set()
        stats = await asyncio.wait_for(job, 60)
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()
    return stats


# -- the scenario -------------------------------------------------------------------------------------
async def test_pagerank_events_haa_storage_restart_and_replay(job_settings: Settings, prefix: str) -> None:
    s = job_settings
    node_topic = NodeTopic(s, PARTITIONS)
    graph = les_miserables(prefix)
    full = nx.DiGraph(graph)  # both directions, summed weights
    n = full.number_of_nodes()
    upserts = edge_values(graph, "upsert", ts=1.0)
    invalid = orjson.dumps({"tenant": "nobody", "src": "a", "dst": "b", "ts": 1.0})  # unknown tenant
    await publish_values(s.kafka, s.kafka.topics.edges, [*upserts, invalid])

    async def settled(expected: nx.DiGraph, newer_than: int = 0) -> bool:
        if pagerank_l1(await node_topic.poll(), expected) > 1e-6:
            return False
        rows = await pg_rows(s, prefix)
        if len(rows) < n or min(r.version for r in rows.values()) <= newer_than:
            return False
        return pagerank_l1({v: r.pagerank for v, r in rows.items()}, expected) <= 1e-6

    # 1. the whole graph: NodeEvents match networkx, HAA stored everywhere
    first = await run_job_until(s, lambda: settled(full), "PageRank and HAA of the full graph")
    assert first["bootstrapped"] == 0 and first["dead_letters"] == 1
    assert first["consumed"] == len(upserts) + 1 and first["recomputes"] >= 1
    assert n <= first["node_events"] == node_topic.count
    rows = await pg_rows(s, prefix)
    await assert_stored_everywhere(s, prefix, rows, n)

    # 2. restart with the same group after deletions: the state is rebuilt from the topic, not replayed
    doomed = nx.Graph(sorted(graph.edges(data=True))[::25][:DELETED])
    deletes = edge_values(doomed, "delete", ts=2.0)
    await publish_values(s.kafka, s.kafka.topics.edges, deletes)
    reduced = full.copy()
    reduced.remove_edges_from([*doomed.edges(), *(e[::-1] for e in doomed.edges())])
    version = max(r.version for r in rows.values())
    second = await run_job_until(s, lambda: settled(reduced, version), "PageRank after the deletions")
    assert second["bootstrapped"] == len(upserts) + 1
    assert second["consumed"] == len(deletes) and second["dead_letters"] == 0
    assert 0 < second["node_events"] <= n  # only nodes whose score moved (here: all, by > 1e-7 in L1)
    after_restart = await pg_rows(s, prefix)
    await assert_stored_everywhere(s, prefix, after_restart, n)

    # 3. replay everything with a new group: the same rows again (same vectors), no duplicates
    replay = s.model_copy(
        update={"runtime": s.runtime.model_copy(update={"group_prefix": f"{prefix}replay"})}
    )
    version = max(r.version for r in after_restart.values())
    third = await run_job_until(replay, lambda: settled(reduced, version), "the replay")
    assert third["bootstrapped"] == 0 and third["consumed"] == len(upserts) + 1 + len(deletes)
    replayed = await pg_rows(s, prefix)
    assert replayed.keys() == after_restart.keys()
    for node, row in replayed.items():
        np.testing.assert_allclose(row.haa, after_restart[node].haa, atol=1e-6)
        np.testing.assert_allclose(row.embedding, after_restart[node].embedding, atol=1e-6)
    await assert_stored_everywhere(s, prefix, replayed, n)


async def assert_stored_everywhere(s: Settings, prefix: str, rows: dict[str, Stored], n: int) -> None:
    """Every node has one PostgreSQL row and one Neo4j node, at the same version with the same HAA."""
    assert len(rows) == n
    versions = {r.version for r in rows.values()}
    assert len(versions) == 1
    nodes = await neo4j_nodes(s, prefix)
    assert len(nodes) == n and {node for node, _, _ in nodes} == rows.keys()  # no duplicates
    for node, haa, version in nodes:
        row = rows[node]
        assert version == row.version and haa is not None and len(haa) == s.graph.embedding_dim
        np.testing.assert_allclose(haa, row.haa, rtol=0, atol=1e-7)
        assert float(np.linalg.norm(row.haa)) < 1.0 and float(np.linalg.norm(row.embedding)) < 1.0
