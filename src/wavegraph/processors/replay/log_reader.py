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

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import ConsumerRecord, TopicPartition

from wavegraph.clients import make_consumer
from wavegraph.errors import ConfigError
from wavegraph.settings import KafkaSettings
from wavegraph.streams.topics import NoSuchTopic, describe_partitions

__all__ = ["LogSpan", "read_log"]


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


async def _partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    try:
        return sorted(await describe_partitions(kafka, topic))
    except NoSuchTopic as exc:
        raise ConfigError(
            f"topic {topic!r} does not exist here (error {exc.error_code}): nothing to replay"
        ) from exc
