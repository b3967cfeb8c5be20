"""GraphJob as a sink, with a fake producer and store: acks before flush returns, hostile events, the
drain of deferred events, republishing after a restart, recomputes, shutdown.

The producer and the store are fakes: these tests cover the job's own decisions (the real broker and
databases are in ``tests/integration/graph``)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent, NodeEvent
from wavegraph.processors.graph_job import recompute as graph_recompute
from wavegraph.processors.graph_job.embed import EmbeddingParams, RecomputeCancelled
from wavegraph.processors.graph_job.pipeline import GraphJob, GraphJobOptions
from wavegraph.settings import Settings
from wavegraph.sinks.node_embeddings import NodeRows
from wavegraph.streams.sink import Item


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[NodeEvent] = []
        self.refuse = False
        self.timeouts: set[str] = set()  # nodes whose sends are not acknowledged
        self.too_large: set[str] = set()  # nodes whose records the producer refuses in send()
        self.later = False

    def _ack(self, future: asyncio.Future[None], event: NodeEvent) -> None:
        if event.node in self.timeouts:
            future.set_exception(KafkaTimeoutError())
        else:
            self.sent.append(event)
            future.set_result(None)

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        node = NodeEvent.model_validate_json(value).node
        if node in self.too_large:
            raise MessageSizeTooLargeError("The message is too large")
        if self.later:  # acknowledged after send() returned, as by a real broker
            event = NodeEvent.model_validate_json(value)
            asyncio.get_running_loop().call_soon(self._ack, future, event)
            return future
        if self.refuse or node in self.timeouts:
            future.set_exception(KafkaTimeoutError())
        else:
            event = NodeEvent.model_validate_json(value)
            assert key == f"{event.tenant}/{event.node}".encode()
            self.sent.append(event)
            future.set_result(None)
        return future


class FakeStore:
    def __init__(self, versions: dict[str, int] | None = None) -> None:
        self.versions = versions or {}
        self.writes: list[NodeRows] = []
        self.failures = 0
        self.refused = 0

    async def latest_versions(self) -> dict[str, int]:
        return dict(self.versions)

    async def write(self, rows: NodeRows, advance: Any = None) -> int:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database down")
        self.writes.append(rows)
        return self.refused


def items(
    pairs: list[tuple[str, str]], ts: float = 1.0, tenant: str = "acme", weight: float = 1.0
) -> list[Item[EdgeEvent]]:
    events = [
        EdgeEvent.model_validate({"tenant": tenant, "src": s, "dst": d, "ts": ts, "weight": weight})
        for s, d in pairs
    ]
    return as_items(events)


def as_items(events: list[EdgeEvent]) -> list[Item[EdgeEvent]]:
    return [Item(value=e, topic="edges", partition=0, offset=i, raw=b"{}") for i, e in enumerate(events)]


RING = [(f"n{i}", f"n{(i + 1) % 10}") for i in range(10)]


async def make_job(
    store: FakeStore,
    producer: FakeProducer,
    grace_s: float = 10.0,
    *,
    cap: int = 10_000,
    max_message_bytes: int | None = None,
) -> GraphJob:
    base = Settings()
    kafka = base.kafka
    if max_message_bytes is not None:
        kafka = kafka.model_copy(update={"max_message_bytes": max_message_bytes})
    settings = base.model_copy(
        update={"runtime": base.runtime.model_copy(update={"shutdown_timeout_s": grace_s}), "kafka": kafka}
    )
    options = GraphJobOptions(
        embedding=EmbeddingParams(dim=4), recompute_fraction=0.1, retry_after_s=0.0, max_node_events=cap
    )
    job = GraphJob(settings, cast(AIOKafkaProducer, producer), store, options=options)
    await job.start()
    return job


async def flush(job: GraphJob, batch: list[Item[EdgeEvent]]) -> None:
    await job.write(batch)
    assert await job.flush() == []


async def test_events_are_acked_in_flush_and_carry_the_stored_version() -> None:
    producer, store = FakeProducer(), FakeStore({"acme": 7})
    job = await make_job(store, producer)
    await flush(job, items(RING))
    assert sorted(e.node for e in producer.sent) == sorted(f"n{i}" for i in range(10))
    assert {e.embedding_version for e in producer.sent} == {7}
    assert abs(sum(e.pagerank for e in producer.sent) - 1.0) < 1e-9
    await asyncio.gather(*job.recomputer.running())
    assert [(w.tenant, w.version, len(w)) for w in store.writes] == [("acme", 8, 10)]
    producer.sent.clear()
    await flush(job, items([("n0", "n5")], ts=2.0))
    assert producer.sent and {e.embedding_version for e in producer.sent} == {8}
    await job.aclose()


async def test_flush_waits_for_acknowledgements_that_arrive_later() -> None:
    producer, store = FakeProducer(), FakeStore()
    producer.later = True
    producer.timeouts = {"n4"}
    job = await make_job(store, producer)
    await job.write(items(RING))
    with pytest.raises(SinkBackpressureError):
        await job.flush()
    assert len(producer.sent) == 9 and job.stats["node_events"] == 9
    producer.timeouts = set()
    await flush(job, [])
    assert [e.node for e in producer.sent[9:]] == ["n4"] and not job.deferred
    await job.aclose()


async def test_a_refused_batch_is_redelivered_and_its_events_sent_again() -> None:
    producer, store = FakeProducer(), FakeStore()
    job = await make_job(store, producer)
    producer.refuse = True
    await job.write(items(RING))
    with pytest.raises(SinkBackpressureError):
        await job.flush()
    producer.refuse = False
    await flush(job, items(RING))  # the loop seeks back and redelivers the same records
    assert len(producer.sent) == 10
    await flush(job, items(RING))  # a replay: nothing changed, nothing sent
    assert len(producer.sent) == 10 and job.stats["node_events"] == 10
    await job.aclose()


async def test_a_failed_recompute_gives_its_changes_back_and_is_retried() -> None:
    producer, store = FakeProducer(), FakeStore()
    store.failures = 1
    job = await make_job(store, producer)
    await flush(job, items(RING))
    await asyncio.gather(*job.recomputer.running())
    assert job.stats["recompute_failures"] == 1
    assert [w.version for w in store.writes] == [2]  # v1 failed and was retried; versions only go up
    assert job.graphs["acme"].changed_edges == 0
    await job.aclose()


async def test_shutdown_cancels_a_long_recompute_and_waits_for_its_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, finished = threading.Event(), threading.Event()

    def slow(graph: object, params: object, cancel: threading.Event, stage: object, **kw: object) -> None:
        started.set()
        while not cancel.wait(0.01):
            pass
        finished.set()
        raise RecomputeCancelled("cancelled")

    monkeypatch.setattr(graph_recompute, "compute_embeddings", slow)
    before = asyncio.all_tasks()
    producer, store = FakeProducer(), FakeStore()
    job = await make_job(store, producer, grace_s=0.1)
    await flush(job, items(RING))
    assert len(producer.sent) == 10  # the recompute does not hold up the batch
    for _ in range(500):
        if started.is_set():
            break
        await asyncio.sleep(0.01)
    assert started.is_set()
    await job.aclose()
    await job.aclose()  # twice is safe
    assert finished.is_set() and not store.writes
    assert job.stats["recomputes_cancelled"] == 1
    assert job.graphs["acme"].recompute_due(0.1)  # recomputed after a restart
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()


def hostile_events() -> list[EdgeEvent]:
    def edge(src: str, dst: str, weight: float, rel: str = "LINKS") -> EdgeEvent:
        return EdgeEvent.model_validate(
            {"tenant": "acme", "src": src, "dst": dst, "rel": rel, "weight": weight, "ts": 1.0}
        )

    return [
        edge("tiny", "n0", 5e-324),  # its only out-edge: α/d = inf, the push solver would spin on NaN
        edge("n1", "n2", 1e308),  # with the next one, fsum overflows
        edge("n1", "n2", 1e308, rel="KNOWS"),
        edge("😀" * 256, "n3", 1.0),  # its NodeEvent does not fit 2048 bytes
    ]


async def test_hostile_events_are_dead_lettered_and_the_good_ones_published() -> None:
    producer, store = FakeProducer(), FakeStore()
    job = await make_job(store, producer, max_message_bytes=2048)
    good = items(RING)
    bad = [
        Item(value=e, topic="edges", partition=1, offset=i, raw=b"{}") for i, e in enumerate(hostile_events())
    ]
    await job.write(good[:5] + bad + good[5:])
    rejected = await job.flush()
    assert [r.item for r in rejected] == bad
    assert [r.reason.split(":", 1)[0] for r in rejected] == ["weight", "weight", "weight", "src"]
    assert sorted(e.node for e in producer.sent) == sorted(f"n{i}" for i in range(10))
    np.testing.assert_allclose([e.pagerank for e in producer.sent], 0.1, atol=1e-9)  # a ring: uniform
    assert job.graphs["acme"].state.num_nodes == 10
    await job.aclose()


async def test_the_rebuild_skips_what_the_live_job_dead_lettered() -> None:
    job = await make_job(FakeStore(), FakeProducer(), max_message_bytes=2048)
    job.rebuild_apply([it.value for it in items(RING)] + hostile_events())
    assert job.graphs["acme"].state.num_nodes == 10 and job.stats["rebuild_refused"] == 4
    await job.aclose()


async def test_deferred_events_go_out_with_flushes_that_need_no_new_records() -> None:
    producer, store = FakeProducer(), FakeStore()
    job = await make_job(store, producer, cap=3)
    await flush(job, items(RING))
    deadline = job.next_deadline()
    assert len(producer.sent) == 3 and deadline is not None and deadline <= time.monotonic()
    assert job.committable(TopicPartition("edges", 0), 42) == 42  # nothing is held back
    flushes = 0
    while job.next_deadline() is not None:
        await flush(job, [])
        flushes += 1
    assert flushes == 3 and sorted(e.node for e in producer.sent) == sorted(f"n{i}" for i in range(10))
    await job.aclose()


def random_batches(seed: int) -> list[list[Item[EdgeEvent]]]:
    rng = np.random.default_rng(seed)
    batches = [items(RING)]
    for b in range(8):
        events = []
        for _ in range(6):
            s, d = (f"n{k}" for k in rng.integers(0, 20, size=2))
            op = "delete" if rng.random() < 0.3 else "upsert"
            weight = float(rng.choice([0.5, 1.0, 3.0]))
            fields = {"tenant": "acme", "src": s, "dst": d, "ts": 2.0 + b, "op": op, "weight": weight}
            events.append(EdgeEvent.model_validate(fields))
        batches.append(as_items(events))
    return batches


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_after_a_restart_every_node_gets_its_current_score(seed: int) -> None:
    """Deferred events are lost with the process; the restarted job republishes every node, so the last
    event of each node matches the scores however much was deferred at the crash."""
    producer = FakeProducer()
    batches = random_batches(seed)
    crash = len(batches) - seed  # 0, 1 or 2 batches after the restart
    first = await make_job(FakeStore(), producer, cap=2)
    for batch in batches[:crash]:
        await flush(first, batch)
    assert first.deferred  # the crash loses deferred events (the offsets were committed)
    await first.aclose()

    second = await make_job(FakeStore(), producer, cap=2)
    second.rebuild_apply([it.value for batch in batches[:crash] for it in batch])
    await second.finish_rebuild()
    for batch in batches[crash:]:
        await flush(second, batch)
    while second.deferred:
        await flush(second, [])
    latest = {e.node: e.pagerank for e in producer.sent}
    g = second.graphs["acme"]
    expected = dict(zip(g.state.node_ids, g.scores().tolist(), strict=True))
    assert latest.keys() == expected.keys()
    assert sum(abs(latest[v] - expected[v]) for v in expected) <= second.options.publish_l1 + 1e-12
    await second.aclose()


async def test_a_record_the_producer_refuses_is_skipped_and_counted() -> None:
    producer, store = FakeProducer(), FakeStore()
    producer.too_large = {"n3"}
    job = await make_job(store, producer)
    await flush(job, items(RING))
    assert sorted(e.node for e in producer.sent) == sorted(f"n{i}" for i in range(10) if i != 3)
    assert job.stats["node_events_refused"] == 1 and job.stats["node_events"] == 9
    await flush(job, [])  # not retried
    assert len(producer.sent) == 9 and not job.deferred
    await job.aclose()


async def test_an_unacknowledged_event_is_sent_again_and_the_acknowledged_ones_are_not() -> None:
    producer, store = FakeProducer(), FakeStore()
    producer.timeouts = {"n3"}
    job = await make_job(store, producer)
    await job.write(items(RING))
    with pytest.raises(SinkBackpressureError):
        await job.flush()
    assert len(producer.sent) == 9
    producer.timeouts = set()
    await flush(job, items(RING))  # redelivered: the graph does not change, n3 is still due
    assert len(producer.sent) == 10 and producer.sent[-1].node == "n3"
    await job.aclose()


async def test_a_failing_computation_is_counted_and_waits_for_new_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mocked fault: ``compute_embeddings`` does not fail on a real graph, so it is made to raise."""

    def broken(*args: object, **kw: object) -> None:
        raise ValueError("eigensolver did not converge")

    monkeypatch.setattr(graph_recompute, "compute_embeddings", broken)
    producer, store = FakeProducer(), FakeStore()
    job = await make_job(store, producer)
    await flush(job, items(RING))
    await asyncio.gather(*job.recomputer.running())
    assert job.stats["recompute_errors"] == 1 and not store.writes
    assert not job.graphs["acme"].recompute_due(0.1)  # the same graph is not computed again
    monkeypatch.undo()
    await flush(job, items([("n0", "n5"), ("n1", "n6"), ("n2", "n7")], ts=2.0))  # 3 of 13 edges: due
    await asyncio.gather(*job.recomputer.running())
    assert [w.version for w in store.writes] == [2] and job.stats["recompute_errors"] == 1
    await job.aclose()


async def test_rows_a_store_refuses_are_counted_and_the_recompute_counts_as_stored() -> None:
    producer, store = FakeProducer(), FakeStore({"acme": 3})
    store.refused = 2
    job = await make_job(store, producer)
    await flush(job, items(RING))
    await asyncio.gather(*job.recomputer.running())
    assert job.stats["rows_refused"] == 2 and job.stats["recomputes"] == 1
    assert job.graphs["acme"].version == 4
    await job.aclose()
