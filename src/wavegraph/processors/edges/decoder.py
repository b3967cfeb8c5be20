"""Decoding ``wavegraph.edges.v1`` records for the edge processor and the graph job.

A record becomes an :class:`~wavegraph.events.EdgeEvent` or raises :class:`InvalidEvent` (→ a dead
letter with its reason): everything :func:`wavegraph.events.decode_edge` checks, plus the tenant, which
must own an API key.
"""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from wavegraph.errors import InvalidEvent
from wavegraph.events import EdgeEvent, decode_edge
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

    def __call__(self, record: ConsumerRecord[bytes, bytes]) -> EdgeEvent:
        event = decode_edge(record.value, self.max_bytes)
        if self.tenants and event.tenant not in self.tenants:
            raise InvalidEvent(f"tenant: unknown tenant {event.tenant!r}", "unknown_tenant")
        return event
