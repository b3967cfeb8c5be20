"""GraphJob as a sink, with a fake producer and store: acks before flush returns, recomputes, shutdown."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent, NodeEvent
from wavegraph.processors import graph_recompute
from wavegraph.processors.graph_embed import EmbeddingParams, RecomputeCancelled
from wavegraph.processors.graph_job import GraphJob, GraphJobOptions
from wavegraph.processors.node_store import NodeRows
from wavegraph.settings import Settings
from wavegraph.streams.sink import Item


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[NodeEvent] = []
        self.refuse = False

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.refuse:
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

    async def latest_versions(self) -> dict[str, int]:
        return dict(self.versions)

    async def write(self, rows: NodeRows, advance: Any = None) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database down")
        self.writes.append(rows)


def items(pairs: list[tuple[str, str]], ts: float = 1.0, tenant: str = "acme") -> list[Item[EdgeEvent]]:
    events = [EdgeEvent.model_validate({"tenant": tenant, "src": s, "dst": d, "ts": ts}) for s, d in pairs]
    return [Item(e, "edges", 0, i, b"{}") for i, e in enumerate(events)]


RING = [(f"n{i}", f"n{(i + 1) % 10}") for i in range(10)]


async def make_job(store: FakeStore, producer: FakeProducer, grace_s: float = 10.0) -> GraphJob:
    base = Settings()
    settings = base.model_copy(
        update={"runtime": base.runtime.model_copy(update={"shutdown_timeout_s": grace_s})}
    )
    options = GraphJobOptions(embedding=EmbeddingParams(dim=4), recompute_fraction=0.1, retry_after_s=0.0)
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
    assert len(producer.sent) == 10 and job.node_events == 10
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
