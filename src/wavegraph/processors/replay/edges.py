"""Rebuilding tenants' graphs from ``wavegraph.edges.v1`` through the edge processor's own sink.

Every retained record is decoded as the edge processor does (the same decoder: size, schema, known
tenant); a record it refuses was dead-lettered when it first arrived and is skipped (counted). The
valid events of the chosen tenant (or of every tenant) go through
:class:`~wavegraph.sinks.neo4j.Neo4jEdgeSink` in log order, so the rebuilt graph follows the same
rules as the live one (newest ``ts`` wins, tombstones; rows Neo4j refuses are refused again and
counted). The sink's writes are idempotent: replaying into the live store is safe, and replaying
twice leaves the same graph.
"""

from __future__ import annotations

from neo4j import AsyncDriver

from wavegraph.errors import InvalidEvent
from wavegraph.processors.edges.decoder import edge_decoder
from wavegraph.processors.graph_job.progress import JobProgress
from wavegraph.processors.replay.log_reader import ReplayCounts, read_events
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import Neo4jEdgeSink
from wavegraph.streams.sink import Item

__all__ = ["EdgeReplay", "replay_edges"]


EdgeReplay = ReplayCounts  # what an edge replay read and wrote


async def replay_edges(
    settings: Settings,
    driver: AsyncDriver,
    *,
    tenant: str | None = None,
    database: str | None = None,
    progress: JobProgress | None = None,
) -> EdgeReplay:
    """Replay the edges topic of ``settings`` into ``driver``'s Neo4j (``tenant`` only, or all)."""
    out = EdgeReplay()
    sink = Neo4jEdgeSink(driver, settings.ingest, None, database=database)
    pairs = read_events(
        settings.kafka,
        settings.kafka.topics.edges,
        edge_decoder(settings),
        InvalidEvent,
        out,
        tenant=tenant,
        batch=settings.ingest.batch_size,
        progress=progress,
    )
    async for batch in pairs:
        if batch:
            items = [Item(event, r.topic, r.partition, r.offset, None, key=r.key) for r, event in batch]
            await sink.write(items)
            refused = await sink.flush()
            out.refused += len(refused)
            out.written += len(items) - len(refused)
    return out
