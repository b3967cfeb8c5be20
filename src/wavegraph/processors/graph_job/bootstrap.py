"""Rebuilding the graph job's state at start: the edge topic from its beginning up to the committed offsets.

The job's state is a pure function of the edge events it has consumed; its committed offsets say which
events those were (a batch is committed only after its NodeEvents were acknowledged). So at start the
job reads, with a separate group-less consumer that never commits, every partition of the topic from
its beginning offset up to (excluding) the group's committed offset, and applies those events to the
state — no events are published for them. The consumer group then continues from the committed
offsets. A partition the group never committed is not read here (the group starts it at the earliest
offset anyway).

A committed offset beyond the partition's end (the topic was deleted and created again under the same
group) is read as the end: the rebuild takes what the partition holds instead of waiting forever.

Cost: one pass over the retained topic. Edges older than the topic's retention are not in the rebuilt
graph (set ``kafka.retention_ms`` accordingly; loading from Neo4j instead is a possible extension).
Invalid records are skipped (they went to the dead-letter topic when first consumed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from wavegraph.clients import make_admin, make_consumer
from wavegraph.errors import InvalidEvent
from wavegraph.events import EdgeLike
from wavegraph.processors.graph_job.progress import JobProgress, NoProgress
from wavegraph.settings import KafkaSettings

__all__ = ["committed_offsets", "rebuild_from_topic"]

Decode = Callable[[ConsumerRecord[bytes, bytes]], EdgeLike]
Apply = Callable[[list[EdgeLike]], None]


async def committed_offsets(kafka: KafkaSettings, group_id: str, topic: str) -> dict[TopicPartition, int]:
    """The group's committed offsets on ``topic`` (partitions without a commit are left out)."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0}


async def rebuild_from_topic(
    kafka: KafkaSettings,
    topic: str,
    group_id: str,
    decode: Decode,
    apply: Apply,
    stop: asyncio.Event,
    *,
    progress: JobProgress | None = None,
    max_records: int = 10_000,
) -> int:
    """Apply every event before ``group_id``'s committed offsets on ``topic``; return how many records
    were read. Returns early (with a partial state) when ``stop`` is set."""
    targets = await committed_offsets(kafka, group_id, topic)
    if not targets:
        return 0
    consumer = make_consumer(kafka)
    await consumer.start()
    try:
        consumer.assign(list(targets))
        begin = await consumer.beginning_offsets(list(targets))
        ends = await consumer.end_offsets(list(targets))
        capped = {tp: min(end, ends[tp]) for tp, end in targets.items()}
        remaining = {tp: end for tp, end in capped.items() if end > begin[tp]}
        for tp in remaining:
            consumer.seek(tp, begin[tp])
        task = (progress or NoProgress()).task(
            f"rebuilding the graph from {topic}", total=sum(end - begin[tp] for tp, end in remaining.items())
        )
        read = 0
        try:
            while remaining and not stop.is_set():
                batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
                events: list[EdgeLike] = []
                before = read
                for tp, records in batches.items():
                    end = remaining.get(tp, 0)
                    for rec in records:
                        if rec.offset >= end:
                            break
                        read += 1
                        try:
                            events.append(decode(rec))
                        except InvalidEvent:
                            continue
                apply(events)
                task.advance(read - before)
                for tp in list(remaining):
                    if await consumer.position(tp) >= remaining[tp]:
                        del remaining[tp]
        finally:
            task.close()
        return read
    finally:
        await consumer.stop()
