"""Exactly-once publishing: stored events go to Kafka in one transaction with the consumed offsets.

The problem it solves: a sink that stores rows in PostgreSQL and publishes an event for them can crash
between the two. Publishing first and storing after republishes on replay (a duplicate on the topic);
storing first and publishing after loses the event when the replay skips what is stored. Here the event
is staged in the PostgreSQL outbox in the same transaction as its rows (:mod:`wavegraph.sinks.outbox`),
so it is stored if and only if it is owed to Kafka, and :meth:`TransactionalOutbox.commit` publishes
what is owed in a Kafka transaction that also commits the consumed offsets
(``send_offsets_to_transaction``) with, in each partition's offset metadata, the highest outbox ``seq``
the transaction carries (``wg.outbox=<seq>``). Kafka commits the events, the offsets and that ``seq``
together or not at all:

* crash before the PostgreSQL commit: nothing stored, nothing published, the offsets not moved: the
  records are replayed and processed again;
* crash after it, before the Kafka commit: the open transaction is aborted (the restarted worker's
  producer, same ``transactional.id``, fences it; or its timeout, ``kafka.transaction_timeout_ms``),
  so a ``read_committed`` consumer never sees its events; the next owner of the partition finds the rows
  above the committed ``seq`` (:meth:`TransactionalOutbox.recover`) and publishes them, while the
  replayed records are skipped as already stored (the sink's own cursor);
* crash after the Kafka commit: the events are in, the rows at or below the committed ``seq`` are
  pruned later; nothing is owed.

So each event reaches a ``read_committed`` consumer exactly once; PostgreSQL stays at-least-once with
idempotent upserts. Zombie fencing: with ``runtime.instance`` set (``run ... --instances N`` sets it;
so should a supervisor), the producer's ``transactional.id`` is stable per worker
(``<kafka.transactional_id_prefix>-<group>-<instance>``), so a restarted worker fences the one it
replaces and aborts its open transaction at once; two live workers with the same id fence each other,
which stops the older one with :class:`~wavegraph.errors.SinkFatalError`. Without it every process takes
an id of its own, and a dead worker's open transaction ends after ``kafka.transaction_timeout_ms``
(meanwhile ``read_committed`` consumers of the partitions it wrote wait: the stable id saves that).

What this does not cover: aiokafka 0.14 has no group-generation fencing (KIP-447) and no
``require_stable`` offset fetch, so a transaction that commits *after* its partition moved to another
worker (possible only if the revocation outlives ``runtime.commit_deadline_s``) can race the new owner's
recovery; :meth:`TransactionalOutbox.recover` reads the metadata twice, 0.2 s apart, when rows are owed,
which covers a commit still propagating its markers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from wavegraph.errors import SinkFatalError
from wavegraph.settings import KafkaSettings

__all__ = [
    "METADATA_PREFIX",
    "OutboxRow",
    "OutboxStore",
    "TransactionalOutbox",
    "outbox_seq",
    "transactional_id",
]

log = logging.getLogger(__name__)

METADATA_PREFIX = "wg.outbox="
_STABLE_WAIT_S = 0.2

CommittedOffsets = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, OffsetAndMetadata]]]


class OutboxRow(msgspec.Struct, frozen=True):
    """One staged event: its place in the input partition's sequence, where it goes and what it says."""

    seq: int
    topic: str
    key: bytes | None
    value: bytes


class OutboxStore(Protocol):
    """Where staged events wait (PostgreSQL: :class:`wavegraph.sinks.outbox.PgOutbox`)."""

    async def pending(self, group: str, tp: TopicPartition, after: int) -> list[OutboxRow]:
        """The rows of ``tp`` with ``seq > after``, in ``seq`` order."""
        ...

    async def last_seq(self, group: str, tp: TopicPartition) -> int:
        """The highest ``seq`` stored for ``tp`` (0: none)."""
        ...

    async def prune(self, group: str, tp: TopicPartition, upto: int) -> None:
        """Delete the rows of ``tp`` with ``seq < upto``."""
        ...


def transactional_id(kafka: KafkaSettings, group: str, instance: int | None) -> str:
    """``<kafka.transactional_id_prefix>-<group>-<instance>``: stable per worker when ``instance`` is
    set (a restarted worker fences the one it replaces), else unique to this process (see the module
    docstring)."""
    worker = str(instance) if instance is not None else f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    return f"{kafka.transactional_id_prefix}-{group}-{worker}"


def outbox_seq(metadata: str | None) -> int:
    """The outbox ``seq`` recorded in a committed offset's metadata (0: none recorded)."""
    if metadata and metadata.startswith(METADATA_PREFIX):
        try:
            return max(0, int(metadata[len(METADATA_PREFIX) :]))
        except ValueError:
            return 0
    return 0


class TransactionalOutbox:
    """Owed events by input partition, published with the offsets in one Kafka transaction.

    ``producer`` is started and transactional; ``committed`` fetches the group's committed offsets with
    their metadata (an admin client's ``list_consumer_group_offsets``). Call :meth:`recover` for a
    partition before staging anything for it, :meth:`reserve` for the ``seq`` of rows staged in
    PostgreSQL, :meth:`owe` once that transaction committed, and :meth:`commit` instead of the
    consumer's commit.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        store: OutboxStore,
        committed: CommittedOffsets,
        group: str,
    ) -> None:
        self._producer = producer
        self._store = store
        self._committed = committed
        self.group = group
        self._owed: dict[TopicPartition, list[OutboxRow]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._offsets: dict[TopicPartition, int] = {}  # the last offset committed for each partition
        self._published: dict[TopicPartition, int] = {}  # the seq the partition's metadata records
        self.stats = {"transactions": 0, "published": 0, "recovered": 0, "aborted": 0}

    # --- partitions ----------------------------------------------------------------------------------
    def knows(self, tp: TopicPartition) -> bool:
        return tp in self._next

    async def recover(self, partitions: Sequence[TopicPartition]) -> None:
        """Learn the committed ``seq`` of each new partition and owe the rows stored above it.

        Raises what the broker or PostgreSQL raise (the caller treats it as an outage)."""
        new = [tp for tp in dict.fromkeys(partitions) if tp not in self._next]
        if not new:
            return
        committed = await self._committed(new)
        lasts = {tp: await self._store.last_seq(self.group, tp) for tp in new}
        if any(lasts[tp] > outbox_seq(_meta(committed, tp)) for tp in new):
            await asyncio.sleep(_STABLE_WAIT_S)  # a transaction that just committed: let its markers land
            committed = await self._committed(new)
        for tp in new:
            seq = outbox_seq(_meta(committed, tp))
            rows = await self._store.pending(self.group, tp, seq) if lasts[tp] > seq else []
            if rows:
                log.info(
                    "%s: %d stored event(s) of %s were never published: publishing them",
                    self.group,
                    len(rows),
                    tp,
                )
            self.stats["recovered"] += len(rows)
            self._owed[tp] = rows
            self._next[tp] = max(seq, lasts[tp]) + 1
            self._published[tp] = seq
            offset = committed.get(tp)
            if offset is not None and offset.offset >= 0:
                self._offsets[tp] = offset.offset

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Forget ``partitions``: their next owner recovers what is owed from PostgreSQL."""
        for tp in partitions:
            self._owed.pop(tp, None)
            self._next.pop(tp, None)
            self._offsets.pop(tp, None)
            self._published.pop(tp, None)

    # --- staging -------------------------------------------------------------------------------------
    def reserve(self, tp: TopicPartition, count: int) -> list[int]:
        """``count`` new ``seq`` numbers of ``tp`` (reserved even if the PostgreSQL transaction fails:
        gaps are harmless)."""
        if tp not in self._next:
            raise RuntimeError(f"recover({tp}) before staging events for it")
        first = self._next[tp]
        self._next[tp] = first + count
        return list(range(first, first + count))

    def owe(self, tp: TopicPartition, rows: Sequence[OutboxRow]) -> None:
        """``rows`` are committed in PostgreSQL: publish them with the next transaction."""
        if tp in self._next:
            self._owed.setdefault(tp, []).extend(rows)

    def owes(self, tp: TopicPartition) -> bool:
        return bool(self._owed.get(tp))

    def owed(self) -> int:
        return sum(len(rows) for rows in self._owed.values())

    # --- the transaction -----------------------------------------------------------------------------
    async def commit(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Publish every owed event of the partitions in ``offsets`` (and of any other partition owing
        events whose committed offset is known) and commit the offsets, in one transaction.

        A partition not recovered yet (the sink saw none of its records: all were dead letters) is
        recovered first, so its offsets are committed too and what a dead worker owed on it goes out.
        Returns the offsets committed. A broker error aborts the transaction and propagates (nothing
        was committed; the events stay owed); a fenced producer raises :class:`SinkFatalError`."""
        unknown = [tp for tp in offsets if tp not in self._next]
        if unknown:  # e.g. every record of the partition so far was a dead letter: the sink never saw it
            await self.recover(unknown)
        plan: dict[TopicPartition, int] = dict(offsets)
        for tp, rows in self._owed.items():
            if rows and tp not in plan and tp in self._offsets:
                plan[tp] = self._offsets[tp]
        plan = {tp: off for tp, off in plan.items() if tp in self._next}
        if not plan:
            return {}
        taken = {tp: list(self._owed.get(tp, ())) for tp in plan}
        try:
            await self._producer.begin_transaction()
            try:
                futures = [
                    await self._producer.send(row.topic, value=row.value, key=row.key)
                    for rows in taken.values()
                    for row in rows
                ]
                await asyncio.gather(*futures)
                meta = {
                    tp: (off, f"{METADATA_PREFIX}{self._high(tp, taken[tp])}") for tp, off in plan.items()
                }
                await self._producer.send_offsets_to_transaction(meta, self.group)
                await self._producer.commit_transaction()
            except BaseException:
                await self._abort()
                raise
        except ProducerFenced as exc:
            raise SinkFatalError(
                f"another worker took over transactional id {self._producer._txn_manager.transactional_id!r}"
                " (give each worker its own runtime.instance)"
            ) from exc
        published = 0
        for tp, rows in taken.items():
            if rows:
                owed = self._owed.get(tp)
                if owed is not None:
                    del owed[: len(rows)]
                published += len(rows)
                self._published[tp] = rows[-1].seq
            self._offsets[tp] = plan[tp]
        self.stats["transactions"] += 1
        self.stats["published"] += published
        await self._prune({tp: rows[-1].seq for tp, rows in taken.items() if rows})
        return plan

    def _high(self, tp: TopicPartition, rows: list[OutboxRow]) -> int:
        """The ``seq`` the partition's metadata records once ``rows`` are published (rows are owed in
        ``seq`` order: the sink stages one PostgreSQL transaction at a time)."""
        return rows[-1].seq if rows else self._published.get(tp, 0)

    async def _abort(self) -> None:
        self.stats["aborted"] += 1
        try:
            await self._producer.abort_transaction()
        except (KafkaError, AssertionError) as exc:  # not in a transaction any more, or the broker is gone
            log.debug("%s: abort failed: %r", self.group, exc)

    async def _prune(self, highs: dict[TopicPartition, int]) -> None:
        """Delete published rows (housekeeping: a failure leaves them for the next prune)."""
        for tp, seq in highs.items():
            try:
                await self._store.prune(self.group, tp, seq)
            except Exception as exc:  # an outage of PostgreSQL must not fail a committed transaction
                log.debug("%s: outbox prune of %s failed: %r", self.group, tp, exc)


def _meta(committed: dict[TopicPartition, OffsetAndMetadata], tp: TopicPartition) -> str | None:
    entry = committed.get(tp)
    return entry.metadata if entry is not None else None
