"""The embedding job (``wavegraph run graph``) against the real Kafka, Neo4j and PostgreSQL.

One scenario on Les Misérables (77 nodes, 254 undirected edges, sent in both directions; weights ≥ 2 are
split over two relationship types, which the job sums back): PageRank in the NodeEvents against
``networkx.pagerank``; HAA stored in Neo4j and PostgreSQL for every node; a restart (same group)
that rebuilds its state from the tenant-keyed copy of the topic and applies deletions; a replay (new
group) that stores the same rows again. Tenant ``acme`` (a known one), isolated by a unique node-id
prefix, cleaned up afterwards.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import orjson
import pytest
from graph_kafka import (
    PARTITIONS,
    NodeTopic,
    Stored,
    edge_values,
    les_miserables,
    neo4j_nodes,
    pagerank_l1,
    pg_rows,
    run_job_until,
)

from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values

pytestmark = pytest.mark.services

DELETED = 10  # undirected edges deleted after the first run


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
    assert first["bootstrapped"] == 0 and first["dead_letters"] == first["route_dead_letters"] == 1
    assert first["route_consumed"] == len(upserts) + 1 and first["routed"] == len(upserts)
    assert first["consumed"] == len(upserts) and first["recomputes"] >= 1
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
    assert second["bootstrapped"] == len(upserts)  # the tenant-keyed copy holds the valid events only
    assert second["consumed"] == second["route_consumed"] == len(deletes) and second["dead_letters"] == 0
    # every node is published again after a restart (once, or twice when a flush before the deletes
    # already sent the rebuilt scores)
    assert n <= second["node_events"] <= 2 * n
    after_restart = await pg_rows(s, prefix)
    await assert_stored_everywhere(s, prefix, after_restart, n)

    # 3. replay everything with a new group: the same rows again (same vectors), no duplicates
    replay = s.model_copy(
        update={"runtime": s.runtime.model_copy(update={"group_prefix": f"{prefix}replay"})}
    )
    version = max(r.version for r in after_restart.values())
    third = await run_job_until(replay, lambda: settled(reduced, version), "the replay")
    assert third["bootstrapped"] == 0 and third["route_consumed"] == len(upserts) + 1 + len(deletes)
    # the new group's router copies every event again: the copy then holds each twice (harmless: a
    # replayed event changes no weight), and the graph stage may settle before reading every copy
    assert third["consumed"] >= len(upserts) + len(deletes)
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
