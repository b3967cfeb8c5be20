"""The graph job's first stage: every valid edge again on ``wavegraph.edges.by-tenant.v1``, keyed by tenant.

``wavegraph.edges.v1`` is keyed by the edge (all events of one edge in order on one partition), so its
partitions carry edges of every tenant, while PageRank needs all edges of a tenant in one process.
:class:`TenantRouter` is the sink of a stream processor of its own group (``<group_prefix>.graph-route``)
that republishes each valid event's original bytes and headers keyed by its tenant: the default
partitioner then puts a tenant on one partition of the copy, and the graph-job instances of the group
``<group_prefix>.graph`` share the tenants by sharing those partitions
(:mod:`~wavegraph.processors.graph_job.ownership`).

Records the edge decoder refuses, and valid events the graph cannot carry
(:class:`~wavegraph.processors.graph_job.guard.GraphGuard`: weights outside ``[1e-270, 1e270]``, node ids
too long for a NodeEvent), go to the dead-letter topic here, so a dead letter names the record the
producer sent (the graph stage applies the guard again, for its loads).
``flush`` waits for every acknowledgement (acks=all) before the loop commits, so a crash
republishes at most what was routed since the last commit: the copy is at-least-once, which the graph
needs no more than that — a replayed edge event changes no weight (newest ``ts`` wins, then
``event_id``; see :mod:`~wavegraph.processors.graph_job.edge_table`). The copy keeps the record order
of each source partition per tenant; order across edges does not matter for the same reason.

A broker that does not acknowledge → **outage**: :class:`~wavegraph.errors.SinkBackpressureError`,
nothing committed, the batch is routed again. A record the producer refuses for its size cannot
happen (the decoder admitted it under ``kafka.max_message_bytes`` and the copy adds no bytes).

The number of partitions of the copy must not change while graph jobs hold state (a tenant would
move to another partition): create it with the partitions it will need (``kafka.partitions``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeLike
from wavegraph.processors.graph_job.guard import GraphGuard
from wavegraph.streams.sink import Item, Rejection

__all__ = ["TenantRouter"]


class TenantRouter:
    """Sink: republish each valid edge event keyed by its tenant (see the module docstring)."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, guard: GraphGuard, retry_after_s: float
    ) -> None:
        self.producer = producer
        self.guard = guard
        self.topic = topic
        self.retry_after_s = retry_after_s
        self.routed = 0
        self._buffer: list[Item[EdgeLike]] = []

    async def write(self, batch: Sequence[Item[EdgeLike]]) -> None:
        self._buffer.extend(batch)

    async def flush(self) -> list[Rejection[EdgeLike]]:
        items, self._buffer = self._buffer, []
        rejected: list[Rejection[EdgeLike]] = []
        acks: list[asyncio.Future[object]] = []
        try:
            for it in items:
                reason = self.guard.refusal(it.value)
                if reason is not None:
                    rejected.append(Rejection(item=it, reason=reason, code="sink_refused"))
                    continue
                if it.raw is None:  # the stream runtime always keeps the bytes; a None would be a tombstone
                    raise ValueError(f"an edge item of {it.topic}[{it.partition}]@{it.offset} has no bytes")
                acks.append(
                    await self.producer.send(
                        self.topic,
                        value=it.raw,
                        key=it.value.tenant.encode(),
                        headers=list(it.headers),
                    )
                )
            await asyncio.gather(*acks)
        except KafkaError as exc:
            await asyncio.gather(*acks, return_exceptions=True)
            raise SinkBackpressureError(
                self.retry_after_s, f"{self.topic} refused routed edges: {exc!r}"
            ) from exc
        self.routed += len(acks)
        return rejected
