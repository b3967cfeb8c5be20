"""Rebalance while a batch is still in flight, against the real broker: two consumers in one group, the
second joining while the first's flush outlives the commit deadline, then the first leaving. Nothing is
lost and nothing is published twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence

import orjson
import pytest
from aiokafka import TopicPartition

from wavegraph.events import EdgeEvent, decode_edge
from wavegraph.settings import Settings
from wavegraph.streams.processor import StreamProcessor
from wavegraph.streams.publish import publish_values
from wavegraph.streams.sink import Item, Rejection
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services


class PublishingGate:
    """A gated sink like the audio sink: its flush is slow (``delay_s``) and "publishes" at the end,
    only what it still owns; ``revoked`` may come in the middle of a flush and drops those items."""

    def __init__(self, published: Counter[int], delay_s: float) -> None:
        self.published = published
        self.delay_s = delay_s
        self.pending: list[Item[EdgeEvent]] = []
        self.flushing = asyncio.Event()
        self.pending_at_flush_end: int | None = None

    async def write(self, batch: list[Item[EdgeEvent]]) -> None:
        self.pending.extend(batch)

    async def flush(self) -> list[Rejection[EdgeEvent]]:
        taken = list(self.pending)
        if taken and self.delay_s:
            self.flushing.set()
            await asyncio.sleep(self.delay_s)
        owned = {id(it) for it in self.pending}  # what revoked() left
        self.pending_at_flush_end = len(owned)
        for it in taken:
            if id(it) in owned:
                self.published[int(it.value.src)] += 1
        self.pending = [it for it in self.pending if id(it) not in {id(t) for t in taken}]
        return []

    def committable(self, tp: TopicPartition, offset: int) -> int:
        return offset

    def next_deadline(self) -> float | None:
        return None

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self.pending = [it for it in self.pending if it.partition not in gone]


def make(settings: Settings, topic: str, group: str, sink: PublishingGate) -> StreamProcessor[EdgeEvent]:
    limit = settings.runtime.max_event_bytes
    return StreamProcessor(
        settings, f"rev-{id(sink)}", [topic], lambda r: decode_edge(r.value, limit), [sink], group_id=group
    )


async def test_a_batch_outliving_the_revocation_deadline_is_not_published_by_the_old_owner(
    services: Settings,
) -> None:
    topic, group = f"test.rev.{uuid.uuid4().hex[:10]}", f"rev-{uuid.uuid4().hex[:8]}"
    await ensure_topics(services.kafka, [topic], partitions=4)
    runtime = services.runtime.model_copy(update={"commit_deadline_s": 0.5, "max_batch": 100_000})
    settings = services.model_copy(update={"runtime": runtime})
    n = 3_000
    values = [orjson.dumps({"tenant": "acme", "src": str(i), "dst": "d", "ts": float(i)}) for i in range(n)]
    await publish_values(settings.kafka, topic, values)
    published: Counter[int] = Counter()
    first_sink, second_sink = PublishingGate(published, 8.0), PublishingGate(published, 0.0)
    first, second = make(settings, topic, group, first_sink), make(settings, topic, group, second_sink)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    task_first = asyncio.create_task(first.run(stop_first))
    task_second: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(first_sink.flushing.wait(), 30)  # the first batch is in its slow flush
        task_second = asyncio.create_task(second.run(stop_second))
        deadline = time.monotonic() + 90
        while not (second._consumer and second._consumer.assignment()):  # the rebalance completed
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert first_sink.pending_at_flush_end is None, "the rebalance came while the flush was running"
        first_sink.delay_s = 0.0
        while len(published) < n:
            assert time.monotonic() < deadline, f"{len(published)} of {n}"
            assert not task_second.done() and not task_first.done()
            await asyncio.sleep(0.2)
        await asyncio.sleep(9.0)  # the old owner's slow flush has ended: a duplicate would show by now
        stop_first.set()  # the first leaves: the second takes every partition
        await asyncio.wait_for(task_first, 30)
        await asyncio.sleep(2.0)
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(task_first, *([task_second] if task_second else []))
        await delete_topics(settings.kafka, [topic])
    assert set(published) == set(range(n)), "nothing lost"
    twice = {k: c for k, c in published.items() if c > 1}
    assert not twice, f"published twice: {len(twice)} records, e.g. {list(twice)[:5]}"
