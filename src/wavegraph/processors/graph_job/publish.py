"""Sending the graph job's NodeEvents (``wavegraph.nodes.v1``) and recording what the broker acknowledged.

:meth:`NodePublisher.publish` sends one event per picked node — keyed ``tenant/node``, carrying the
tenant's latest stored embedding version — waits for every acknowledgement (acks=all), then calls
:meth:`~wavegraph.processors.graph_job.tenant.TenantGraph.mark_published` for the acknowledged nodes only,
so an unacknowledged node stays due and the next attempt sends it again. A record the producer refuses
for good in ``send`` (``MessageSizeTooLargeError``; the graph guard makes it unreachable) is skipped,
logged and counted in :attr:`NodePublisher.refused` and marked published, so it is not retried forever.
Any other Kafka error, in ``send`` or in an acknowledgement, becomes :class:`SinkBackpressureError`
after what was acknowledged has been recorded.

**Exactly once** (``kafka.exactly_once``, a transactional producer): ``publish`` only *stages* the
picks (marked published at once, so the next flush does not pick them again), and :meth:`commit` sends
everything staged in one Kafka transaction together with the consumed offsets
(``send_offsets_to_transaction``): a ``read_committed`` consumer sees the NodeEvents of a batch if and
only if the batch's offsets are committed. A failed transaction is aborted and its nodes are due again
(:meth:`~wavegraph.processors.graph_job.tenant.TenantGraph.forget_published`); a fenced producer (another
live worker with the same ``runtime.instance``) raises :class:`~wavegraph.errors.SinkFatalError`. The
commit runs in the stream runtime's background commit, beside the next batch's flush; staging instead
of sending keeps every send inside a transaction the commit controls.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, ProducerFenced
from pydantic import ValidationError

from wavegraph.errors import SinkBackpressureError, SinkFatalError
from wavegraph.events import NodeEvent, encode
from wavegraph.processors.graph_job.tenant import FloatArray, IndexArray, TenantGraph

__all__ = ["NodePublisher", "Pick"]

log = logging.getLogger(__name__)

Pick = tuple[TenantGraph, IndexArray, FloatArray]  # a graph, the node indices to publish, their scores


@dataclass(frozen=True)
class _Send:
    graph: TenantGraph
    node: int
    score: float
    ack: asyncio.Future[object] | None  # None: refused by the producer for good


class NodePublisher:
    """Publishes picked nodes' scores (see the module docstring); counts what it sent and refused."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, retry_after_s: float, *, transactional: bool = False
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.retry_after_s = retry_after_s
        self.transactional = transactional
        self.sent = 0
        self.refused = 0
        self.transactions = 0
        self.aborted = 0
        self._staged: list[Pick] = []

    @property
    def owes(self) -> bool:
        """Exactly-once mode: picks wait for the next transaction."""
        return bool(self._staged)

    async def publish(self, picks: list[Pick]) -> None:
        """Send every pick and wait for the acks; raise :class:`SinkBackpressureError` when any is
        missing (the acknowledged ones count as published all the same). Exactly-once mode: stage
        them for :meth:`commit`."""
        if self.transactional:
            for g, nodes, values in picks:
                g.mark_published(nodes, values)
            self._staged.extend(p for p in picks if p[1].size)
            return
        sends: list[_Send] = []
        try:
            for g, nodes, values in picks:
                for i, score in zip(nodes.tolist(), values.tolist(), strict=True):
                    sends.append(_Send(g, i, score, await self._send(g, i, score)))
        except KafkaError as exc:
            await _acks(sends)
            self._settle(sends)
            raise self._backpressure(exc) from exc
        await _acks(sends)
        failure = self._settle(sends)
        if failure is not None:
            raise self._backpressure(failure)

    async def commit(self, offsets: dict[TopicPartition, int], group: str) -> None:
        """Send what is staged and commit ``offsets`` for ``group`` in one transaction (see the module
        docstring). Raises the broker's :class:`KafkaError` when nothing was committed."""
        staged, self._staged = self._staged, []
        try:
            await self.producer.begin_transaction()
            try:
                sends = [
                    _Send(g, i, score, await self._send(g, i, score))
                    for g, nodes, values in staged
                    for i, score in zip(nodes.tolist(), values.tolist(), strict=True)
                ]
                await _acks(sends)
                failure = next((e for s in sends if s.ack is not None and (e := _ack_error(s.ack))), None)
                if failure is not None:
                    raise failure
                if offsets:
                    await self.producer.send_offsets_to_transaction(offsets, group)
                await self.producer.commit_transaction()
            except BaseException:
                await self._abort(staged)
                raise
        except ProducerFenced as exc:
            raise SinkFatalError(
                f"another worker took over transactional id {self.producer._txn_manager.transactional_id!r}"
                " (give each worker its own runtime.instance)"
            ) from exc
        self.transactions += 1
        self.refused += sum(1 for s in sends if s.ack is None)
        self.sent += sum(1 for s in sends if s.ack is not None)

    async def _abort(self, staged: list[Pick]) -> None:
        self.aborted += 1
        for g, nodes, _ in staged:
            g.forget_published(nodes)
        try:
            await self.producer.abort_transaction()
        except (KafkaError, AssertionError) as exc:  # not in a transaction any more, or the broker is gone
            log.debug("graph: abort failed: %r", exc)

    async def _send(self, g: TenantGraph, i: int, score: float) -> asyncio.Future[object] | None:
        """Hand one NodeEvent to the producer; ``None`` when it refuses that record for good."""
        node = g.state.node_ids[i]
        try:
            event = NodeEvent(tenant=g.tenant, node=node, pagerank=score, embedding_version=g.version)
            key = f"{g.tenant}/{node}".encode()
            ack: asyncio.Future[object] = await self.producer.send(self.topic, value=encode(event), key=key)
        except (MessageSizeTooLargeError, ValidationError) as exc:
            log.error("graph: NodeEvent of %s/%r refused, skipped: %s", g.tenant, node, exc)
            return None
        return ack

    def _settle(self, sends: list[_Send]) -> BaseException | None:
        """Mark the acknowledged and the refused events as published (every ack must be done);
        return the first failure."""
        failure: BaseException | None = None
        done: dict[str, tuple[TenantGraph, list[int], list[float]]] = {}
        for s in sends:
            if s.ack is None:
                self.refused += 1
            elif (error := _ack_error(s.ack)) is None:
                self.sent += 1
            else:
                failure = failure or error
                continue
            _, nodes, values = done.setdefault(s.graph.tenant, (s.graph, [], []))
            nodes.append(s.node)
            values.append(s.score)
        for g, nodes, values in done.values():
            g.mark_published(np.asarray(nodes, dtype=np.int64), np.asarray(values, dtype=np.float64))
        return failure

    def _backpressure(self, exc: BaseException) -> SinkBackpressureError:
        return SinkBackpressureError(self.retry_after_s, f"{self.topic} refused node events: {exc!r}")


async def _acks(sends: list[_Send]) -> None:
    """Wait for every acknowledgement (failures are read from the futures afterwards)."""
    await asyncio.gather(*(s.ack for s in sends if s.ack is not None), return_exceptions=True)


def _ack_error(ack: asyncio.Future[object]) -> BaseException | None:
    if ack.cancelled():
        return KafkaError("NodeEvent send cancelled")
    return ack.exception()
