"""The edge processor: ``wavegraph.edges.v1`` → validate → Neo4j (bounded buffer + breaker) → commit."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import redis.asyncio as aioredis
from aiokafka.structs import ConsumerRecord
from neo4j import AsyncDriver, AsyncGraphDatabase

from wavegraph.errors import InvalidEvent
from wavegraph.events import EdgeEvent, decode_edge
from wavegraph.settings import Neo4jSettings, Settings
from wavegraph.sinks.neo4j import Neo4jEdgeSink
from wavegraph.streams.processor import StreamProcessor


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


def neo4j_driver(neo4j: Neo4jSettings) -> AsyncDriver:
    auth = (neo4j.user, neo4j.password) if neo4j.auth else None
    return AsyncGraphDatabase.driver(
        neo4j.uri, auth=auth, connection_timeout=5.0, max_transaction_retry_time=0
    )


async def run_edges(
    settings: Settings, stop: asyncio.Event, started: asyncio.Event | None = None
) -> dict[str, int]:
    """Run the edge processor until ``stop`` is set; return its counters."""
    async with AsyncExitStack() as stack:
        driver = neo4j_driver(settings.neo4j)
        stack.push_async_callback(driver.close)
        client = aioredis.Redis.from_url(settings.redis.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        stack.push_async_callback(client.aclose)
        sink = Neo4jEdgeSink(driver, settings.ingest, client, database=settings.neo4j.database)
        proc: StreamProcessor[EdgeEvent] = StreamProcessor(
            settings,
            "edges",
            [settings.kafka.topics.edges],
            edge_decoder(settings),
            [sink],
            max_batch=settings.ingest.batch_size,
        )
        if started is not None:
            proc.started = started
        beat_stop = asyncio.Event()
        beat = asyncio.create_task(sink.heartbeat(beat_stop), name="neo4j-breaker-heartbeat")
        try:
            await proc.run(stop)
        finally:
            beat_stop.set()
            await beat
        return {**proc.stats, "neo4j_written": sink.written}
