"""Hostile but valid edge events among good ones: the graph job dead-letters them and goes on.

Against the real Kafka, Neo4j and PostgreSQL. Les Misérables (as in ``test_graph_job.py``) with, mixed
in, events that pass ``EdgeDecoder`` but that the graph cannot carry: a weight of ``5e-324`` on the
only out-edge of a new node (without the guard the push solver spins forever on a NaN residual), two
relationship types of ``1e308`` on one pair (their sum overflows), and a node id whose NodeEvent does
not fit ``kafka.max_message_bytes`` (2048 here; the topics accept more, so only the job's own limit
applies). Each becomes a dead letter naming its record (its value is cut to what fits the limit) and
the reason; the job keeps running and publishes the good graph's PageRank; the hostile nodes never
reach the nodes topic or the stores.
"""

from __future__ import annotations

import networkx as nx
import orjson
import pytest
from aiokafka import TopicPartition
from graph_kafka import (
    PARTITIONS,
    TENANT,
    NodeTopic,
    edge_values,
    les_miserables,
    neo4j_nodes,
    pagerank_l1,
    pg_rows,
    read_new,
    run_job_until,
)

from wavegraph.events import parse_dlq_headers
from wavegraph.processors.graph_job.guard import node_record_bytes
from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values

pytestmark = pytest.mark.services

LIMIT = 2048


def hostile(prefix: str) -> dict[bytes, str]:
    """Record value → the start of the reason its dead letter must carry."""

    def edge(src: str, dst: str, weight: float, rel: str = "LINKS") -> bytes:
        event = {"tenant": TENANT, "src": prefix + src, "dst": prefix + dst, "rel": rel, "weight": weight}
        return orjson.dumps({**event, "ts": 1.0})

    long_id = "😀" * (256 - len(prefix))
    assert node_record_bytes(TENANT, prefix + long_id) > LIMIT
    return {
        edge("tiny", "Valjean", 5e-324): "weight:",
        edge("Javert", "Valjean", 1e308): "weight:",
        edge("Javert", "Valjean", 1e308, rel="KNOWS"): "weight:",
        edge(long_id, "Valjean", 1.0): "src:",
    }


async def test_hostile_edges_are_dead_lettered_and_the_good_graph_is_published(
    job_settings: Settings, prefix: str
) -> None:
    s = job_settings.model_copy(
        update={"kafka": job_settings.kafka.model_copy(update={"max_message_bytes": LIMIT})}
    )
    graph = les_miserables(prefix)
    full = nx.DiGraph(graph)
    n = full.number_of_nodes()
    good = edge_values(graph, "upsert", ts=1.0)
    bad = hostile(prefix)
    values = good[:300] + list(bad) + good[300:]
    await publish_values(job_settings.kafka, s.kafka.topics.edges, values)
    node_topic = NodeTopic(s, PARTITIONS)
    dlq = {TopicPartition(s.kafka.topics.dlq, p): 0 for p in range(PARTITIONS)}
    dead: list[dict[str, str]] = []

    async def settled() -> bool:
        dead.extend(parse_dlq_headers(rec.headers) for rec in await read_new(s.kafka, dlq))
        rows = await pg_rows(s, prefix)
        return pagerank_l1(await node_topic.poll(), full) <= 1e-6 and len(dead) >= len(bad) and len(rows) == n

    stats = await run_job_until(s, settled, "the good graph's PageRank and the dead letters")
    assert stats["route_consumed"] == len(values) and stats["dead_letters"] == len(bad)
    assert stats["consumed"] == stats["routed"] == len(good)  # the router refused them: not copied
    edges = {TopicPartition(s.kafka.topics.edges, p): 0 for p in range(PARTITIONS)}
    records = {(rec.partition, rec.offset): rec.value for rec in await read_new(s.kafka, edges)}
    named = [records[int(h["partition"]), int(h["offset"])] for h in dead]
    assert sorted(named) == sorted(bad)  # exactly the hostile records, each once
    for value, headers in zip(named, dead, strict=True):
        assert headers["reason"].startswith(bad[value]) and headers["topic"] == s.kafka.topics.edges
        assert headers["code"] == "sink_refused" and headers["processor"] == "graph-route"
    assert set(node_topic.latest) == set(full)  # no hostile node was published
    assert {node for node, _, _ in await neo4j_nodes(s, prefix)} == set(full)
    assert stats["node_events_refused"] == 0 and stats["pagerank_resets"] == 0
