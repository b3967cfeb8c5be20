"""``wavegraph run edges``: ``wavegraph.edges.v1`` → validate → Neo4j (bounded buffer + breaker) → commit.

Wires :class:`~wavegraph.processors.edges.decoder.EdgeDecoder`, the
:class:`~wavegraph.sinks.neo4j.Neo4jEdgeSink` (its breaker state published to Redis by a heartbeat) and
the stream runtime through :func:`~wavegraph.streams.pipeline.run_pipeline`.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from wavegraph.clients import neo4j_driver, redis_client
from wavegraph.processors.edges.decoder import edge_decoder
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import Neo4jEdgeSink
from wavegraph.streams.pipeline import run_pipeline


async def run_edges(
    settings: Settings, stop: asyncio.Event, started: asyncio.Event | None = None
) -> dict[str, int]:
    """Run the edge processor until ``stop`` is set; return its counters."""
    async with AsyncExitStack() as stack:
        driver = neo4j_driver(settings.neo4j)
        stack.push_async_callback(driver.close)
        client = redis_client(settings.redis)
        stack.push_async_callback(client.aclose)
        sink = Neo4jEdgeSink(driver, settings.ingest, client, database=settings.neo4j.database)
        stats = await run_pipeline(
            settings,
            "edges",
            [settings.kafka.topics.edges],
            edge_decoder(settings),
            [sink],
            stop,
            started=started,
            max_batch=settings.ingest.batch_size,
            background=[sink.heartbeat],
        )
        return {**stats, "neo4j_written": sink.written}
