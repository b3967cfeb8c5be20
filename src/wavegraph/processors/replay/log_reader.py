"""Reading a topic from its first retained offset to the end it had when the read began.

No consumer group: nothing is committed and no running processor's assignment changes. The end is
the high watermark of every partition at the start (records produced later belong to the live
processors, not to the replay), so a read of a busy topic still ends.

The read is ``read_committed``: on a topic written in Kafka transactions (the transcripts of the
exactly-once audio processor) records of aborted transactions are skipped and the end is the last
stable offset, so every committed event is read once; on a topic written without transactions (edges)
it reads what a plain read would. A partition is done when the consumer's position reaches its end, not
when a record at ``end - 1`` arrives: the last offset of a transactional partition is usually a commit
marker, which is never returned as a record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from aiokafka import ConsumerRecord, TopicPartition

from wavegraph.clients import make_consumer
from wavegraph.errors import ConfigError
from wavegraph.processors.graph_job.progress import JobProgress, NoProgress
from wavegraph.settings import KafkaSettings
from wavegraph.streams.topics import NoSuchTopic, describe_partitions

__all__ = ["LogSpan", "ReplayCounts", "read_events", "read_log"]


class _Tenanted(Protocol):
    @property
    def tenant(self) -> str: ...


E = TypeVar("E", bound=_Tenanted)


@dataclass(frozen=True)
class LogSpan:
    """The records a read covers: per partition ``[first, end)``."""

    first: dict[int, int]
    end: dict[int, int]

    @property
    def records(self) -> int:
        return sum(self.end[p] - self.first[p] for p in self.end)


async def read_log(
    kafka: KafkaSettings, topic: str, *, batch: int = 1000, span: list[LogSpan] | None = None
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Yield ``topic``'s committed records in batches of at most ``batch``, every partition from its
    first retained offset to its end at the start (high watermark, or last stable offset). ``span``,
    when given, receives the :class:`LogSpan` before the first batch (for a progress bar)."""
    partitions = await _partitions(kafka, topic)
    consumer = make_consumer(
        kafka, client_id="wavegraph-replay", max_poll_records=batch, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        todo = {tp.partition: end[tp] for tp in tps if end[tp] > first[tp]}
        if span is not None:
            span.append(
                LogSpan({tp.partition: first[tp] for tp in tps}, {tp.partition: end[tp] for tp in tps})
            )
        await consumer.seek_to_beginning(*tps)
        while todo:
            fetched = await consumer.getmany(*[TopicPartition(topic, p) for p in todo], timeout_ms=1000)
            out: list[ConsumerRecord[bytes, bytes]] = []
            for tp, records in fetched.items():
                stop = todo.get(tp.partition)
                if stop is not None:
                    out.extend(r for r in records if r.offset < stop)
            for p, stop in list(todo.items()):
                if await consumer.position(TopicPartition(topic, p)) >= stop:
                    del todo[p]
            if out:
                yield out
    finally:
        await consumer.stop()


@dataclass
class ReplayCounts:
    """What a replay read and wrote (a replay adds the counts of its own store)."""

    records: int = 0
    skipped_invalid: int = 0
    other_tenants: int = 0
    written: int = 0
    refused: int = 0
    tenants: set[str] = field(default_factory=set)


async def read_events(
    kafka: KafkaSettings,
    topic: str,
    decode: Callable[[ConsumerRecord[bytes, bytes]], E],
    invalid: type[Exception] | tuple[type[Exception], ...],
    counts: ReplayCounts,
    *,
    tenant: str | None = None,
    batch: int = 1000,
    progress: JobProgress | None = None,
) -> AsyncIterator[list[tuple[ConsumerRecord[bytes, bytes], E]]]:
    """:func:`read_log`, decoded: per batch, the records ``decode`` accepts (``invalid``: what it raises
    for a record that is not an event: skipped) of ``tenant`` (all: None), with their events, counted
    into ``counts``; a progress bar follows the whole read. The batch's progress is advanced when the
    caller asks for the next one (after it wrote this one)."""
    span: list[LogSpan] = []
    task = None
    try:
        async for records in read_log(kafka, topic, batch=batch, span=span):
            if task is None:
                task = (progress or NoProgress()).task(f"replay {topic}", total=span[0].records)
            out: list[tuple[ConsumerRecord[bytes, bytes], E]] = []
            for r in records:
                counts.records += 1
                try:
                    event = decode(r)
                except invalid:
                    counts.skipped_invalid += 1
                    continue
                if tenant is not None and event.tenant != tenant:
                    counts.other_tenants += 1
                    continue
                counts.tenants.add(event.tenant)
                out.append((r, event))
            yield out
            task.advance(len(records))
    finally:
        if task is not None:
            task.close()


async def _partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    try:
        return sorted(await describe_partitions(kafka, topic))
    except NoSuchTopic as exc:
        raise ConfigError(
            f"topic {topic!r} does not exist here (error {exc.error_code}): nothing to replay"
        ) from exc
