"""Helpers of the graph job's integration tests: the Les Misérables events, reading the outputs
(NodeEvents, dead letters, stored rows) and running the job until a condition holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import networkx as nx
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pgvector.asyncpg import register_vector

from wavegraph.clients import neo4j_driver
from wavegraph.events import NodeEvent
from wavegraph.processors.graph_job.pipeline import GraphJobOptions, run_graph
from wavegraph.settings import KafkaSettings, Settings

TENANT = "acme"
PARTITIONS = 3


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
async def read_new(
    kafka: KafkaSettings, positions: dict[TopicPartition, int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """The committed records from ``positions`` to the current last stable offsets (``positions``
    move on), read ``read_committed`` (the NodeEvents are transactional) with a short-lived consumer,
    so no consumer task of the test's outlives a read. Positions follow the consumer's, which step
    over transaction markers (a marker is never a record)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(list(positions))
        ends = await consumer.end_offsets(list(positions))
        for tp, position in positions.items():
            consumer.seek(tp, position)
        while any(positions[tp] < ends[tp] for tp in positions):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out += records
            for tp in positions:
                positions[tp] = max(positions[tp], await consumer.position(tp))
    finally:
        await consumer.stop()
    return out


class NodeTopic:
    """The latest NodeEvent per node on the nodes topic (keys are ``tenant/node``: one partition each)."""

    def __init__(self, settings: Settings, partitions: int) -> None:
        self.kafka = settings.kafka
        self.positions = {TopicPartition(settings.kafka.topics.nodes, p): 0 for p in range(partitions)}
        self.latest: dict[str, NodeEvent] = {}
        self.count = 0

    async def poll(self) -> dict[str, float]:
        for rec in await read_new(self.kafka, self.positions):
            event = NodeEvent.model_validate_json(rec.value)
            assert rec.key == f"{event.tenant}/{event.node}".encode()
            self.latest[event.node] = event
            self.count += 1
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


async def delete_prefixed(settings: Settings, prefix: str) -> None:
    """Remove the test's nodes from Neo4j and its rows from ``node_embeddings``."""
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


# -- running the job ----------------------------------------------------------------------------------
async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def run_job_until(
    settings: Settings,
    done: Callable[[], Awaitable[bool]],
    what: str,
    *,
    options: GraphJobOptions | None = None,
) -> dict[str, int]:
    """Run the job until ``done``; stop it; check that it left no task behind; return its counters."""
    before = asyncio.all_tasks()
    stop = asyncio.Event()
    job = asyncio.create_task(run_graph(settings, stop, options=options))
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
