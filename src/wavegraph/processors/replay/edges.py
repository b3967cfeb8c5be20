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

from dataclasses import dataclass, field

from neo4j import AsyncDriver

from wavegraph.errors import InvalidEvent
from wavegraph.events import EdgeEvent
from wavegraph.processors.edges.decoder import edge_decoder
from wavegraph.processors.graph_job.progress import JobProgress, NoProgress
from wavegraph.processors.replay.log_reader import LogSpan, read_log
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import Neo4jEdgeSink
from wavegraph.streams.sink import Item

__all__ = ["EdgeReplay", "replay_edges"]


@dataclass
class EdgeReplay:
    """What a replay read and wrote (the transcript replay adds its own counts to these)."""

    records: int = 0
    skipped_invalid: int = 0
    other_tenants: int = 0
    written: int = 0
    refused: int = 0
    tenants: set[str] = field(default_factory=set)


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
    topic = settings.kafka.topics.edges
    span: list[LogSpan] = []
    task = None
    batch_size = settings.ingest.batch_size
    decode = edge_decoder(settings)
    async for records in read_log(settings.kafka, topic, batch=batch_size, span=span):
        if task is None:
            task = (progress or NoProgress()).task(f"replay {topic}", total=span[0].records)
        items: list[Item[EdgeEvent]] = []
        for r in records:
            out.records += 1
            try:
                event = decode(r)
            except InvalidEvent:
                out.skipped_invalid += 1
                continue
            if tenant is not None and event.tenant != tenant:
                out.other_tenants += 1
                continue
            out.tenants.add(event.tenant)
            items.append(Item(event, r.topic, r.partition, r.offset, None, key=r.key))
        if items:
            await sink.write(items)
            refused = await sink.flush()
            out.refused += len(refused)
            out.written += len(items) - len(refused)
        task.advance(len(records))
    if task is not None:
        task.close()
    return out
