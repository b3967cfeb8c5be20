"""GraphJob as a sink against the real Kafka, Neo4j and PostgreSQL: acknowledgements before ``flush``
returns, embedding versions from the store, a nodes topic that refuses the events, a database that goes
down, hostile events, the drain of deferred events, republishing after a restart, recomputes, shutdown.

These were unit tests over a fake producer and store (issue 18). What stays faked in
``tests/unit/processors/graph_job/test_pipeline.py`` are the faults that cannot be caused for real, each
saying why there: one node's acknowledgement failing among others, the producer refusing one record in
``send``, a store refusing single rows through the job.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from graph_kafka import PARTITIONS, TENANT, NodeTopic, pg_rows

from wavegraph.clients import make_producer, neo4j_driver, pg_pool
from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent
from wavegraph.processors.graph_job import recompute as graph_recompute
from wavegraph.processors.graph_job.embed import EmbeddingParams, RecomputeCancelled
from wavegraph.processors.graph_job.pipeline import GraphJob, GraphJobOptions
from wavegraph.settings import Settings
from wavegraph.sinks.node_embeddings import NodeStore
from wavegraph.streams.sink import Item

pytestmark = pytest.mark.services


@pytest.fixture
async def producer(job_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(job_settings.kafka, client_id="test-graph-sink", request_timeout_ms=5_000)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@pytest.fixture
async def store(job_settings: Settings) -> AsyncIterator[NodeStore]:
    driver = neo4j_driver(job_settings.neo4j)
    pool = await pg_pool(job_settings.postgres, max_size=2)
    try:
        yield NodeStore(driver, pool)
    finally:
        await pool.close()
        await driver.close()


async def make_job(
    settings: Settings,
    producer: AIOKafkaProducer,
    store: NodeStore,
    *,
    cap: int = 10_000,
    grace_s: float = 10.0,
    max_message_bytes: int | None = None,
    retry_after_s: float = 0.0,
) -> GraphJob:
    kafka = settings.kafka
    if max_message_bytes is not None:
        kafka = kafka.model_copy(update={"max_message_bytes": max_message_bytes})
    settings = settings.model_copy(
        update={
            "runtime": settings.runtime.model_copy(update={"shutdown_timeout_s": grace_s}),
            "kafka": kafka,
        }
    )
    options = GraphJobOptions(
        embedding=EmbeddingParams(dim=settings.graph.embedding_dim),
        recompute_fraction=0.1,
        retry_after_s=retry_after_s,
        max_node_events=cap,
    )
    job = GraphJob(settings, producer, store, options=options)
    await job.start()
    return job


def ring(prefix: str) -> list[tuple[str, str]]:
    return [(f"{prefix}n{i}", f"{prefix}n{(i + 1) % 10}") for i in range(10)]


def items(pairs: list[tuple[str, str]], ts: float = 1.0, weight: float = 1.0) -> list[Item[EdgeEvent]]:
    events = [
        EdgeEvent.model_validate({"tenant": TENANT, "src": s, "dst": d, "ts": ts, "weight": weight})
        for s, d in pairs
    ]
    return as_items(events)


def as_items(events: list[EdgeEvent]) -> list[Item[EdgeEvent]]:
    return [Item(value=e, topic="edges", partition=0, offset=i, raw=b"{}") for i, e in enumerate(events)]


async def flush(job: GraphJob, batch: list[Item[EdgeEvent]]) -> None:
    await job.write(batch)
    assert await job.flush() == []


def dead_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- acknowledgements and versions --------------------------------------------------------------------
async def test_events_are_on_the_topic_when_flush_returns_and_carry_the_stored_version(
    job_settings: Settings, producer: AIOKafkaProducer, store: NodeStore, prefix: str
) -> None:
    v0 = (await store.latest_versions()).get(TENANT, 0)
    topic = NodeTopic(job_settings, PARTITIONS)
    job = await make_job(job_settings, producer, store)
    await flush(job, items(ring(prefix)))
    scores = await topic.poll()  # read right after flush: acks=all, so they are there
    assert sorted(scores) == sorted(f"{prefix}n{i}" for i in range(10))
    np.testing.assert_allclose(list(scores.values()), 0.1, atol=1e-9)  # a ring: uniform
    assert {e.embedding_version for e in topic.latest.values()} == {v0}
    await asyncio.gather(*job.recomputer.running())
    rows = await pg_rows(job_settings, prefix)
    assert len(rows) == 10 and {r.version for r in rows.values()} == {v0 + 1}
    await flush(job, items([(f"{prefix}n0", f"{prefix}n5")], ts=2.0))
    await topic.poll()
    assert topic.count > 10 and topic.latest[f"{prefix}n5"].embedding_version == v0 + 1
    await job.aclose()


async def test_a_nodes_topic_that_refuses_the_events_is_backpressure_and_the_redelivery_sends_them(
    job_settings: Settings, producer: AIOKafkaProducer, store: NodeStore, prefix: str
) -> None:
    """A real refusal: the nodes topic accepts at most 64 bytes per record batch, so the broker refuses
    every acknowledgement; once the topic takes them, the redelivered batch publishes every node."""
    name = f"{job_settings.kafka.topics.nodes}.small"
    admin = AIOKafkaAdminClient(bootstrap_servers=job_settings.kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "64"})])
        topics = job_settings.kafka.topics.model_copy(update={"nodes": name})
        settings = job_settings.model_copy(
            update={"kafka": job_settings.kafka.model_copy(update={"topics": topics})}
        )
        job = await make_job(settings, producer, store)
        await job.write(items(ring(prefix)))
        with pytest.raises(SinkBackpressureError, match="refused node events"):
            await job.flush()
        topic = NodeTopic(settings, 1)
        assert await topic.poll() == {} and job.deferred
        config = ConfigResource(ConfigResourceType.TOPIC, name, configs={"max.message.bytes": "1048576"})
        await admin.alter_configs([config])
        for _ in range(50):  # the broker applies a topic's new config within moments
            try:
                await flush(job, items(ring(prefix)))  # the loop seeks back and redelivers the batch
                break
            except SinkBackpressureError:
                await asyncio.sleep(0.2)
        assert sorted(await topic.poll()) == sorted(f"{prefix}n{i}" for i in range(10))
        await flush(job, items(ring(prefix)))  # a replay: nothing changed, nothing sent
        assert (
            topic.count == job.stats["node_events"] == 10
            and (await topic.poll()).keys() == topic.latest.keys()
        )
        await job.aclose()
    finally:
        await admin.delete_topics([name])
        await admin.close()


# -- the store ------------------------------------------------------------------------------------------
async def test_a_database_that_goes_down_counts_failures_gives_the_changes_back_and_retries(
    job_settings: Settings, producer: AIOKafkaProducer, store: NodeStore, prefix: str
) -> None:
    """A real outage: after the job started, its store's PostgreSQL pool points at a dead port."""
    job = await make_job(job_settings, producer, store, retry_after_s=0.05)
    dsn = job_settings.postgres.url.replace(f":{job_settings.postgres.port}/", f":{dead_port()}/")
    dead = await asyncpg.create_pool(dsn, min_size=0, max_size=1)
    try:
        job.recomputer.store = NodeStore(store.driver, dead)
        await flush(job, items(ring(prefix)))
        for _ in range(200):
            if job.stats["recompute_failures"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert job.stats["recompute_failures"] >= 2  # failed, waited, retried, failed again
        await job.aclose()
    finally:
        await dead.close()
    assert job.stats["recomputes"] == 0 and await pg_rows(job_settings, prefix) == {}
    graph = job.graphs[TENANT]
    assert graph.changed_edges >= 10 and graph.recompute_due(0.1)  # the changes were given back


async def test_a_failing_computation_is_counted_and_waits_for_new_changes(
    job_settings: Settings,
    producer: AIOKafkaProducer,
    store: NodeStore,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mocked fault: ``compute_embeddings`` does not fail on a real graph, so it is made to raise once."""

    def broken(*args: object, **kw: object) -> None:
        raise ValueError("eigensolver did not converge")

    monkeypatch.setattr(graph_recompute, "compute_embeddings", broken)
    job = await make_job(job_settings, producer, store)
    v0 = job.recomputer.versions.get(TENANT, 0)
    await flush(job, items(ring(prefix)))
    await asyncio.gather(*job.recomputer.running())
    assert job.stats["recompute_errors"] == 1 and await pg_rows(job_settings, prefix) == {}
    assert not job.graphs[TENANT].recompute_due(0.1)  # the same graph is not computed again
    monkeypatch.undo()
    extra = [(f"{prefix}n0", f"{prefix}n5"), (f"{prefix}n1", f"{prefix}n6"), (f"{prefix}n2", f"{prefix}n7")]
    await flush(job, items(extra, ts=2.0))  # 3 of 13 edges: due again
    await asyncio.gather(*job.recomputer.running())
    rows = await pg_rows(job_settings, prefix)
    assert len(rows) == 10 and {r.version for r in rows.values()} == {v0 + 2}  # v0 + 1 was the failure
    assert job.stats["recompute_errors"] == 1 and job.stats["recomputes"] == 1
    await job.aclose()


async def test_shutdown_cancels_a_long_recompute_and_waits_for_its_thread(
    job_settings: Settings,
    producer: AIOKafkaProducer,
    store: NodeStore,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``compute_embeddings`` is replaced by one that runs until told to stop (a real one on a ring ends
    in milliseconds); the broker and the database are real."""
    started, finished = threading.Event(), threading.Event()

    def slow(graph: object, params: object, cancel: threading.Event, stage: object, **kw: object) -> None:
        started.set()
        while not cancel.wait(0.01):
            pass
        finished.set()
        raise RecomputeCancelled("cancelled")

    monkeypatch.setattr(graph_recompute, "compute_embeddings", slow)
    before = asyncio.all_tasks()
    topic = NodeTopic(job_settings, PARTITIONS)
    job = await make_job(job_settings, producer, store, grace_s=0.1)
    await flush(job, items(ring(prefix)))
    assert len(await topic.poll()) == 10  # the recompute does not hold up the batch
    for _ in range(500):
        if started.is_set():
            break
        await asyncio.sleep(0.01)
    assert started.is_set()
    await job.aclose()
    await job.aclose()  # twice is safe
    assert finished.is_set() and await pg_rows(job_settings, prefix) == {}
    assert job.stats["recomputes_cancelled"] == 1
    assert job.graphs[TENANT].recompute_due(0.1)  # recomputed after a restart
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()


# -- hostile events, deferred events, restarts ----------------------------------------------------------
def hostile_events(prefix: str) -> list[EdgeEvent]:
    def edge(src: str, dst: str, weight: float, rel: str = "LINKS") -> EdgeEvent:
        fields = {"tenant": TENANT, "src": src, "dst": dst, "rel": rel, "weight": weight, "ts": 1.0}
        return EdgeEvent.model_validate(fields)

    return [
        edge(f"{prefix}tiny", f"{prefix}n0", 5e-324),  # its only out-edge: α/d = inf
        edge(f"{prefix}n1", f"{prefix}n2", 1e308),  # with the next one, fsum overflows
        edge(f"{prefix}n1", f"{prefix}n2", 1e308, rel="KNOWS"),
        edge("😀" * 256, f"{prefix}n3", 1.0),  # its NodeEvent does not fit 2048 bytes
    ]


async def test_hostile_events_are_dead_lettered_and_the_good_ones_published(
    job_settings: Settings, producer: AIOKafkaProducer, store: NodeStore, prefix: str
) -> None:
    job = await make_job(job_settings, producer, store, max_message_bytes=2048)
    good = items(ring(prefix))
    bad = [
        Item(value=e, topic="edges", partition=1, offset=i, raw=b"{}")
        for i, e in enumerate(hostile_events(prefix))
    ]
    await job.write(good[:5] + bad + good[5:])
    rejected = await job.flush()
    assert [r.item for r in rejected] == bad
    assert [r.reason.split(":", 1)[0] for r in rejected] == ["weight", "weight", "weight", "src"]
    scores = await NodeTopic(job_settings, PARTITIONS).poll()
    assert sorted(scores) == sorted(f"{prefix}n{i}" for i in range(10))
    np.testing.assert_allclose(list(scores.values()), 0.1, atol=1e-9)
    assert job.graphs[TENANT].state.num_nodes == 10
    job.rebuild_apply([it.value for it in good] + hostile_events(prefix))  # the rebuild skips them too
    assert job.graphs[TENANT].state.num_nodes == 10 and job.stats["rebuild_refused"] == 4
    await job.aclose()


async def test_deferred_events_go_out_with_flushes_that_need_no_new_records(
    job_settings: Settings, producer: AIOKafkaProducer, store: NodeStore, prefix: str
) -> None:
    topic = NodeTopic(job_settings, PARTITIONS)
    job = await make_job(job_settings, producer, store, cap=3)
    await flush(job, items(ring(prefix)))
    assert len(await topic.poll()) == 3 and job.next_deadline() == 0.0
    assert job.committable(TopicPartition("edges", 0), 42) == 42  # nothing is held back
    flushes = 0
    while job.next_deadline() is not None:
        await flush(job, [])
        flushes += 1
    assert flushes == 3 and sorted(await topic.poll()) == sorted(f"{prefix}n{i}" for i in range(10))
    assert topic.count == 10  # each node once
    await job.aclose()


def random_batches(prefix: str, seed: int) -> list[list[Item[EdgeEvent]]]:
    rng = np.random.default_rng(seed)
    batches = [items(ring(prefix))]
    for b in range(8):
        events = []
        for _ in range(6):
            s, d = (f"{prefix}n{k}" for k in rng.integers(0, 20, size=2))
            op = "delete" if rng.random() < 0.3 else "upsert"
            weight = float(rng.choice([0.5, 1.0, 3.0]))
            fields = {"tenant": TENANT, "src": s, "dst": d, "ts": 2.0 + b, "op": op, "weight": weight}
            events.append(EdgeEvent.model_validate(fields))
        batches.append(as_items(events))
    return batches


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_after_a_restart_every_node_gets_its_current_score(
    job_settings: Settings, producer: AIOKafkaProducer, store: NodeStore, prefix: str, seed: int
) -> None:
    """Deferred events are lost with the process; the restarted job republishes every node, so the last
    event of each node on the topic matches the scores however much was deferred at the stop."""
    topic = NodeTopic(job_settings, PARTITIONS)
    batches = random_batches(prefix, seed)
    stop = len(batches) - seed  # 0, 1 or 2 batches after the restart
    first = await make_job(job_settings, producer, store, cap=2)
    for batch in batches[:stop]:
        await flush(first, batch)
    assert first.deferred  # the stop loses deferred events (the offsets were committed)
    await first.aclose()

    second = await make_job(job_settings, producer, store, cap=2)
    second.rebuild_apply([it.value for batch in batches[:stop] for it in batch])
    await second.finish_rebuild()
    for batch in batches[stop:]:
        await flush(second, batch)
    while second.deferred:
        await flush(second, [])
    latest = await topic.poll()
    g = second.graphs[TENANT]
    expected = dict(zip(g.state.node_ids, g.scores().tolist(), strict=True))
    assert latest.keys() == expected.keys()
    assert sum(abs(latest[v] - expected[v]) for v in expected) <= second.options.publish_l1 + 1e-12
    await asyncio.gather(*second.recomputer.running())
    await second.aclose()
