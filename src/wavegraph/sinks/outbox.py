"""The event outbox in PostgreSQL: events stored with the rows they describe, until Kafka has them.

A sink that writes rows and publishes an event for them (the transcription sink) stages the event here,
in the same PostgreSQL transaction as its rows (:func:`stage`), so "stored" and "to be published" commit
together. :class:`~wavegraph.streams.transactions.TransactionalOutbox` then publishes staged events in a
Kafka transaction together with the consumed offsets, and records the highest ``seq`` it published in
the committed offset's metadata. After a crash, the rows of a partition above that ``seq``
(:meth:`PgOutbox.pending`) are exactly the events that were stored but never published; rows at or
below it are pruned (:meth:`PgOutbox.prune`).

Table ``event_outbox`` (migration ``V2026.12.3``): one sequence per (consumer group, input topic,
partition), starting at 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from aiokafka import TopicPartition

from wavegraph.streams.transactions import OutboxRow

__all__ = ["PgOutbox", "stage"]

_INSERT = """
INSERT INTO event_outbox (consumer_group, topic, partition, seq, out_topic, event_key, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (consumer_group, topic, partition, seq) DO UPDATE SET
    out_topic = EXCLUDED.out_topic, event_key = EXCLUDED.event_key, payload = EXCLUDED.payload
"""


async def stage(conn: asyncpg.Connection, group: str, tp: TopicPartition, rows: Sequence[OutboxRow]) -> None:
    """Insert ``rows`` inside the caller's open transaction (a replayed ``seq`` is overwritten)."""
    if rows:
        await conn.executemany(
            _INSERT, [(group, tp.topic, tp.partition, r.seq, r.topic, r.key, r.value) for r in rows]
        )


class PgOutbox:
    """:class:`~wavegraph.streams.transactions.OutboxStore` on ``event_outbox``, through a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def pending(self, group: str, tp: TopicPartition, after: int) -> list[OutboxRow]:
        """The rows of ``tp`` with ``seq > after``, in sequence order."""
        rows = await self._pool.fetch(
            "SELECT seq, out_topic, event_key, payload FROM event_outbox "
            "WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND seq > $4 ORDER BY seq",
            group,
            tp.topic,
            tp.partition,
            after,
        )
        return [OutboxRow(r["seq"], r["out_topic"], r["event_key"], r["payload"]) for r in rows]

    async def last_seq(self, group: str, tp: TopicPartition) -> int:
        """The highest ``seq`` stored for ``tp`` (0: none)."""
        value = await self._pool.fetchval(
            "SELECT coalesce(max(seq), 0) FROM event_outbox "
            "WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
            group,
            tp.topic,
            tp.partition,
        )
        return int(value or 0)

    async def prune(self, group: str, tp: TopicPartition, upto: int) -> None:
        """Delete the rows of ``tp`` with ``seq < upto`` (published; the last one is kept, so the
        sequence of the partition never restarts below what Kafka already has)."""
        await self._pool.execute(
            "DELETE FROM event_outbox "
            "WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND seq < $4",
            group,
            tp.topic,
            tp.partition,
            upto,
        )
