"""Sending the graph job's NodeEvents (``wavegraph.nodes.v1``) and recording what the broker acknowledged.

:meth:`NodePublisher.publish` sends one event per picked node — keyed ``tenant/node``, carrying the
tenant's latest stored embedding version — waits for every acknowledgement (acks=all), then calls
:meth:`~wavegraph.processors.graph_job.tenant.TenantGraph.mark_published` for the acknowledged nodes only,
so an unacknowledged node stays due and the next attempt sends it again. A record the producer refuses
for good in ``send`` (``MessageSizeTooLargeError``; the graph guard makes it unreachable) is skipped,
logged and counted in :attr:`NodePublisher.refused` and marked published, so it is not retried forever.
Any other Kafka error, in ``send`` or in an acknowledgement, becomes :class:`SinkBackpressureError`
after what was acknowledged has been recorded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from pydantic import ValidationError

from wavegraph.errors import SinkBackpressureError
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

    def __init__(self, producer: AIOKafkaProducer, topic: str, retry_after_s: float) -> None:
        self.producer = producer
        self.topic = topic
        self.retry_after_s = retry_after_s
        self.sent = 0
        self.refused = 0

    async def publish(self, picks: list[Pick]) -> None:
        """Send every pick and wait for the acks; raise :class:`SinkBackpressureError` when any is
        missing (the acknowledged ones count as published all the same)."""
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
