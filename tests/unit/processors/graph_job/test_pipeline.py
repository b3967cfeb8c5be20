"""GraphJob as a sink: the faults that cannot be caused for real, with a fake producer or store.

Everything else the sink does (acknowledgements before ``flush`` returns, a topic refusing the events,
a database going down, hostile events, the drain of deferred events, republishing after a restart,
recomputes, shutdown) is tested against the real Kafka, Neo4j and PostgreSQL in
``tests/integration/processors/graph_job/test_graph_sink.py``. What stays here, and why it is faked:

- one node's acknowledgement failing while the others of the same flush succeed: a broker refuses or
  times out a whole record batch (a partition's worth), never one record among others;
- the producer refusing one record in ``send`` (``MessageSizeTooLargeError``): the graph guard refuses
  every event whose NodeEvent could exceed the producer's limit, so a real producer never does;
- the store refusing single rows *through the job*: the job writes only rows PostgreSQL accepts (ids
  without NUL, finite vectors, scores ≥ 0), so the refusal is the fake store's (the real refusals are
  in ``test_node_store.py``, at the store).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent, NodeEvent
from wavegraph.processors.graph_job.embed import EmbeddingParams
from wavegraph.processors.graph_job.pipeline import GraphJob, GraphJobOptions
from wavegraph.settings import Settings
from wavegraph.sinks.node_embeddings import NodeRows
from wavegraph.streams.sink import Item


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[NodeEvent] = []
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
        if node in self.timeouts:
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
        self.refused = 0

    async def latest_versions(self) -> dict[str, int]:
        return dict(self.versions)

    async def write(self, rows: NodeRows, advance: Any = None) -> int:
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


async def test_flush_waits_for_acknowledgements_that_arrive_later() -> None:
    """Faked: one node's acknowledgement fails after ``send`` returned while the others succeed."""
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


async def test_a_record_the_producer_refuses_is_skipped_and_counted() -> None:
    """Faked: ``send`` raises ``MessageSizeTooLargeError`` for one node (unreachable after the guard)."""
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
    """Faked: one node's acknowledgement times out among others that succeed."""
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


async def test_rows_a_store_refuses_are_counted_and_the_recompute_counts_as_stored() -> None:
    """Faked: the store reports two refused rows (the job never writes rows PostgreSQL refuses)."""
    producer, store = FakeProducer(), FakeStore({"acme": 3})
    store.refused = 2
    job = await make_job(store, producer)
    await flush(job, items(RING))
    await asyncio.gather(*job.recomputer.running())
    assert job.stats["rows_refused"] == 2 and job.stats["recomputes"] == 1
    assert job.graphs["acme"].version == 4
    await job.aclose()
