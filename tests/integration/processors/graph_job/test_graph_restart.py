"""NodeEvents deferred past a commit survive a restart (against the real Kafka, Neo4j and PostgreSQL).

``graph.max_node_events`` is 2, so Les Misérables' 77 nodes take ~39 flushes to publish; in the first
run a fetch waits 1 s before the job flushes again without new records, so the drain is slow. The job
is stopped as soon as the group has committed every edge, while most NodeEvents are still deferred in
memory. The second run (same group, fast fetches) rebuilds the graph from the tenant-keyed copy of
the topic, consumes nothing new, and must still publish every node: the last event of each node then
matches networkx.
"""

from __future__ import annotations

import networkx as nx
import pytest
from graph_kafka import PARTITIONS, NodeTopic, edge_values, les_miserables, pagerank_l1, run_job_until

from wavegraph.processors.graph_job.bootstrap import committed_offsets
from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values

pytestmark = pytest.mark.services

CAP = 2


def with_fetch(settings: Settings, fetch_timeout_ms: int) -> Settings:
    return settings.model_copy(
        update={
            "graph": settings.graph.model_copy(update={"max_node_events": CAP}),
            "runtime": settings.runtime.model_copy(update={"fetch_timeout_ms": fetch_timeout_ms}),
        }
    )


async def test_node_events_deferred_when_the_job_stopped_are_published_after_the_restart(
    job_settings: Settings, prefix: str
) -> None:
    slow, fast = with_fetch(job_settings, 1000), with_fetch(job_settings, 50)
    graph = les_miserables(prefix)
    full = nx.DiGraph(graph)
    n = full.number_of_nodes()
    upserts = edge_values(graph, "upsert", ts=1.0)
    await publish_values(slow.kafka, slow.kafka.topics.edges, upserts)
    node_topic = NodeTopic(slow, PARTITIONS)
    group = f"{slow.runtime.group_prefix}.graph"

    async def committed_everything() -> bool:
        offsets = await committed_offsets(slow.kafka, group, slow.kafka.topics.edges_by_tenant)
        return sum(offsets.values()) == len(upserts)

    first = await run_job_until(slow, committed_everything, "the commit of every edge")
    await node_topic.poll()
    assert first["consumed"] == len(upserts)
    assert len(node_topic.latest) < n  # the precondition: events were still deferred at the stop

    async def every_node_published() -> bool:
        return pagerank_l1(await node_topic.poll(), full) <= 1e-6

    published = len(node_topic.latest)
    second = await run_job_until(fast, every_node_published, "every node's NodeEvent after the restart")
    assert second["bootstrapped"] == len(upserts) and second["consumed"] == 0
    # what the first run published is read back, not published again: only the deferred nodes go out
    assert second["restored"] == published and second["node_events"] == n - published
    assert set(node_topic.latest) == set(full) and node_topic.count == n  # each node exactly once
