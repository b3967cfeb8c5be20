"""The sink contract of the consume→sink→commit loop.

A sink receives batches of validated events, may buffer them, and must have made everything it
received durable when ``flush()`` returns: only then are the offsets committed. When it cannot take
more now it raises :class:`wavegraph.errors.SinkBackpressureError`; the processor then pauses its
partitions, seeks back to the first uncommitted offset, waits ``retry_after`` and resumes. A row the
sink can never write (a data error) is returned as a :class:`Rejection` and goes to the dead-letter
topic instead of failing the batch forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

import msgspec
from aiokafka import TopicPartition

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Item(msgspec.Struct, Generic[T_co], frozen=True, gc=False):
    """A validated event with the coordinates of the record it came from.

    One is built per record on the hot path, so it is a frozen msgspec struct (several times cheaper
    to build than a frozen dataclass) left out of the cyclic garbage collector: an item only points at
    its event and at immutable coordinates, so it can never be part of a cycle.
    """

    value: T_co
    topic: str
    partition: int
    offset: int
    raw: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Rejection(Generic[T_co]):
    """An item the sink refuses for good, with the reason the dead letter will carry."""

    item: Item[T_co]
    reason: str
    code: str = "sink_refused"  # one of wavegraph.streams.reasons.CODES (the metric label)


class Sink(Protocol[T]):
    async def write(self, batch: list[Item[T]]) -> None:
        """Take a batch (buffering is allowed); may raise :class:`SinkBackpressureError`."""
        ...

    async def flush(self) -> list[Rejection[T]]:
        """Make everything written so far durable; return the items refused for good (usually none).

        May raise :class:`SinkBackpressureError`, after which the runtime redelivers the batch.
        """
        ...


@runtime_checkable
class CommitGate(Protocol):
    """Optional hooks of a sink whose work spans batches (e.g. transcription windows over many records).

    A sink that has all three is consulted by the runtime; one without them is committed batch by batch.
    """

    def committable(self, tp: TopicPartition, offset: int) -> int:
        """The offset of ``tp`` that may be committed when ``offset`` (the position after the last
        processed record) is proposed: ``offset`` itself, or the first record the sink still holds."""
        ...

    def next_deadline(self) -> float | None:
        """``time.monotonic()`` time at which ``flush()`` has work without new records, or None."""
        ...

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Forget what is held for ``partitions`` (their new owner replays it from the last commit).

        May be called while :meth:`Sink.flush` is running (a batch that outlived the commit deadline of
        a rebalance): afterwards the sink must publish and store nothing more for those partitions,
        including work the running flush already did but has not yet made visible."""
        ...


@runtime_checkable
class TransactionalCommit(Protocol):
    """Optional hooks of a sink that commits the consumed offsets itself, in a Kafka transaction with
    the events it publishes (:mod:`wavegraph.streams.transactions`). The runtime then never calls the
    consumer's ``commit``: it hands every commit to the sink whose ``transactional`` is true."""

    @property
    def transactional(self) -> bool:
        """True when the sink commits offsets itself (a sink may offer both modes)."""
        ...

    def owes(self, tp: TopicPartition | None = None) -> bool:
        """Whether events of ``tp`` (of any partition: None) still wait for a transaction."""
        ...

    async def commit_offsets(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Commit ``offsets`` (and publish what is owed) in one transaction; return what was committed.
        Raises :class:`aiokafka.errors.KafkaError` when nothing was committed."""
        ...


@runtime_checkable
class AssignmentAware(Protocol):
    """Optional hook of a sink whose state is per partition and must be loaded before a newly assigned
    partition is consumed (the graph job's tenants: :mod:`wavegraph.processors.graph_job.ownership`)."""

    async def assigned(self, partitions: Sequence[TopicPartition]) -> None:
        """``partitions`` is this worker's whole assignment after a rebalance (Kafka's eager protocol:
        every earlier partition was revoked first, through :meth:`CommitGate.revoked`). Awaited inside
        the rebalance, before any record of the assignment is fetched, and never while a ``flush``
        runs; the group's commits of the previous owners are already visible. A long load delays the
        group's next fetch, not other members (keep it under ``max.poll.interval.ms``)."""
        ...
