"""Decoding ``wavegraph.edges.v1`` records for the edge processor and the graph job.

A record becomes an edge event or raises :class:`InvalidEvent` (→ a dead letter with its reason):
everything :func:`wavegraph.events.decode_edge` checks, plus the tenant, which must own an API key. The
stream runtime calls :meth:`EdgeDecoder.decode_batch` once per partition of a batch
(:class:`~wavegraph.events.EdgeBatchDecoder`: one msgspec call, the same verdicts and reasons), which
yields :class:`~wavegraph.events.DecodedEdge` structs; one record (:meth:`EdgeDecoder.__call__`: the
replay, the graph job's rebuild) becomes an :class:`~wavegraph.events.EdgeEvent`. The edge sinks read
both through :class:`~wavegraph.events.EdgeLike`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord

from wavegraph.errors import InvalidEvent
from wavegraph.events import DecodedEdge, EdgeBatchDecoder, EdgeEvent
from wavegraph.settings import Settings


def known_tenants(settings: Settings) -> frozenset[str]:
    """Tenants are those that own an API key."""
    return frozenset(settings.http.api_keys.values())


def edge_decoder(settings: Settings) -> EdgeDecoder:
    return EdgeDecoder(settings.runtime.max_event_bytes, known_tenants(settings))


class EdgeDecoder:
    """Validates an edge record; an unknown tenant is a dead letter like any other invalid event."""

    def __init__(self, max_bytes: int, tenants: frozenset[str]) -> None:
        self.max_bytes = max_bytes
        self.tenants = tenants
        self._batch = EdgeBatchDecoder(max_bytes, tenants)

    def __call__(self, record: ConsumerRecord[bytes, bytes]) -> EdgeEvent:
        return self._batch.decode_one(record.value)

    def decode_batch(
        self, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[DecodedEdge], dict[int, InvalidEvent]]:
        """The events of the valid ``records`` in order, and the refusals by index into ``records``."""
        return self._batch.decode([rec.value for rec in records])
