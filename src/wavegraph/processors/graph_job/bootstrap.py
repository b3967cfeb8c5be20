"""Loading a graph-job instance's tenants: ranges of the tenant-keyed edge topic, read without a group.

The state of a partition's tenants is a pure function of the edge events consumed from it, and the
group's committed offsets say which events those were. When an instance starts or is assigned a
partition (:mod:`~wavegraph.processors.graph_job.ownership` decides which range each partition needs),
:func:`read_ranges` reads each range with a separate group-less consumer that never commits and hands
every partition's decoded events to ``apply`` — nothing is published for them. The group then
continues from the committed offsets.

A committed offset beyond the partition's end (the topic was deleted and created again under the same
group) is read as the end: the load takes what the partition holds instead of waiting forever. A start
below the partition's first retained offset starts there.

Cost: one pass over the assigned partitions of the retained topic (kept forever:
``kafka.edges_retention_ms``).
Invalid records are skipped (they went to the dead-letter topic when first consumed).

What was published for the loaded tenants is read back too (:func:`read_published`): the latest
NodeEvent of each of their nodes on the compacted ``wavegraph.nodes.v1``, read ``read_committed`` up
to the last stable offset (events of a transaction a dead worker left open are not waited for: they
are aborted, never visible). The loaded graph then publishes only the nodes whose score differs from
what its consumers already see, instead of every node again. Cost: one pass over the compacted
nodes topic (one record per node of every tenant) per load.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from wavegraph.clients import make_admin, make_consumer
from wavegraph.errors import InvalidEvent
from wavegraph.events import EdgeLike
from wavegraph.processors.graph_job.ownership import BEGINNING
from wavegraph.processors.graph_job.progress import JobProgress, NoProgress
from wavegraph.settings import KafkaSettings
from wavegraph.streams.topics import NoSuchTopic, describe_partitions

__all__ = ["TenantLoader", "committed_offsets", "read_published", "read_ranges"]

log = logging.getLogger(__name__)

_IDLE_POLLS = 20  # 10 s without a record while reading the published scores: give up on the rest

Decode = Callable[[ConsumerRecord[bytes, bytes]], EdgeLike]
Apply = Callable[[int, list[tuple[int, EdgeLike]]], None]  # partition, (offset, event) in log order


async def committed_offsets(kafka: KafkaSettings, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on ``topic`` by partition (partitions without a commit left out)."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0
    }


async def read_ranges(
    kafka: KafkaSettings,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    decode: Decode,
    apply: Apply,
    stop: asyncio.Event,
    *,
    progress: JobProgress | None = None,
    max_records: int = 10_000,
) -> dict[int, int]:
    """Apply every event of ``topic`` in ``ranges`` (partition → ``(start, end)``, ``start`` may be
    :data:`~wavegraph.processors.graph_job.ownership.BEGINNING`, ``end`` excluded); return, per
    partition, the offset the read ended at (the end, capped at the partition's end). Returns early
    (with a partial state, and the offsets reached) when ``stop`` is set."""
    if not ranges:
        return {}
    tps = {p: TopicPartition(topic, p) for p in ranges}
    consumer = make_consumer(kafka)
    await consumer.start()
    try:
        consumer.assign(list(tps.values()))
        begin = await consumer.beginning_offsets(list(tps.values()))
        ends = await consumer.end_offsets(list(tps.values()))
        reached: dict[int, int] = {}
        remaining: dict[TopicPartition, int] = {}
        total = 0
        for p, (start, end) in ranges.items():
            tp = tps[p]
            first = begin[tp] if start == BEGINNING else max(start, begin[tp])
            last = min(end, ends[tp])
            reached[p] = max(first, last)
            if last > first:
                consumer.seek(tp, first)
                remaining[tp] = last
                total += last - first
        task = (progress or NoProgress()).task(f"loading tenants from {topic}", total=total)
        try:
            while remaining and not stop.is_set():
                batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
                for tp, records in batches.items():
                    end = remaining.get(tp, 0)
                    events: list[tuple[int, EdgeLike]] = []
                    for rec in records:
                        if rec.offset >= end:
                            break
                        try:
                            events.append((rec.offset, decode(rec)))
                        except InvalidEvent:
                            continue
                    apply(tp.partition, events)
                    task.advance(sum(1 for rec in records if rec.offset < end))
                for tp in list(remaining):
                    position = await consumer.position(tp)
                    if position >= remaining[tp]:
                        del remaining[tp]
                    elif stop.is_set():
                        reached[tp.partition] = position
        finally:
            task.close()
        for tp in remaining:  # stopped early
            reached[tp.partition] = await consumer.position(tp)
        return reached
    finally:
        await consumer.stop()


async def read_published(
    kafka: KafkaSettings, topic: str, tenants: set[str], *, max_records: int = 50_000
) -> dict[str, dict[str, float]]:
    """The latest committed PageRank of every node of ``tenants`` on the nodes ``topic``: tenant →
    node → score (see the module docstring)."""
    out: dict[str, dict[str, float]] = {t: {} for t in tenants}
    if not tenants:
        return out
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await describe_partitions(kafka, topic))]
    except NoSuchTopic:
        return out
    consumer = make_consumer(kafka, isolation_level="read_committed")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)  # read_committed: the last stable offsets
        remaining = {tp: end for tp, end in ends.items() if end > 0}
        idle = 0
        while remaining and idle < _IDLE_POLLS:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for rec in records:
                    tenant, _, node = (rec.key or b"").decode(errors="replace").partition("/")
                    if tenant in out and rec.value is not None:
                        out[tenant][node] = float(orjson.loads(rec.value)["pagerank"])
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
        if remaining:  # what was not read is published again: a repeat, never a loss
            log.warning("graph: %s: stopped reading the published scores at %s", topic, remaining)
        return out
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class TenantLoader:
    """What the graph job needs to load tenants: the group's commits on the topic, and reading ranges."""

    kafka: KafkaSettings
    topic: str
    nodes_topic: str
    group_id: str
    decode: Decode
    stop: asyncio.Event
    progress: JobProgress | None = None

    async def committed(self) -> dict[int, int]:
        return await committed_offsets(self.kafka, self.group_id, self.topic)

    async def published(self, tenants: set[str]) -> dict[str, dict[str, float]]:
        return await read_published(self.kafka, self.nodes_topic, tenants)

    async def read(self, ranges: dict[int, tuple[int, int]], apply: Apply) -> dict[int, int]:
        return await read_ranges(
            self.kafka, self.topic, ranges, self.decode, apply, self.stop, progress=self.progress
        )
