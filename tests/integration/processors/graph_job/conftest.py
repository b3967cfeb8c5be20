"""Fixtures of the graph job's tests against the real Kafka, Neo4j and PostgreSQL.

Each test gets its own topics (edges, nodes, dead letters) and consumer-group prefix, and a node-id
prefix under tenant ``acme``; the nodes and rows under that prefix are deleted afterwards.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from graph_kafka import PARTITIONS, delete_prefixed

from wavegraph.migrations import apply_all
from wavegraph.settings import Settings
from wavegraph.streams.topics import delete_topics, ensure_topics


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
        update={name: f"test.graph.{name}.{suffix}" for name in ("edges", "edges_by_tenant", "nodes", "dlq")}
    )
    settings = migrated.model_copy(
        update={
            "kafka": migrated.kafka.model_copy(update={"topics": topics}),
            "runtime": migrated.runtime.model_copy(update={"group_prefix": f"test-graph-{suffix}"}),
            # recompute after every batch that changes the graph, so the final graph's HAA gets stored
            "graph": migrated.graph.model_copy(update={"recompute_fraction": 1e-9}),
        }
    )
    names = [topics.edges, topics.edges_by_tenant, topics.nodes, topics.dlq]
    await ensure_topics(settings.kafka, names, partitions=PARTITIONS)
    yield settings
    await delete_topics(settings.kafka, names)
    await delete_prefixed(settings, prefix)
