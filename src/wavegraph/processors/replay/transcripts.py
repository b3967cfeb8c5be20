"""Rebuilding tenants' transcripts in PostgreSQL from ``wavegraph.transcripts.v1``.

The topic is the tables' source of truth (kept forever, ``kafka.transcripts_retention_ms`` = -1). Each
committed event (the read is ``read_committed``: events of aborted transactions of the exactly-once
audio processor never count) of the chosen tenant, or of every tenant, becomes the row set the
transcription sink wrote for its window, through the sink's own writer
(:class:`~wavegraph.sinks.transcripts.TranscriptStore`, ``ON CONFLICT`` upserts, a window's segments
replaced as a whole): ``transcripts`` from the event's fields, ``transcript_segments`` from its segments,
``embeddings`` (``kind = 'transcript'``) with the window's metadata. What the event does not say is made
again the way the sink made it:

- **vectors**: the window's text and segments are embedded with the same MiniLM model
  (:class:`~wavegraph.processors.embed_text.TextEmbedder`), one window's texts per call, the list the
  sink embeds (``[text, *segments]``); see :mod:`~wavegraph.processors.replay.checksum` for how equal
  they come out (bit-identical here);
- **the stream cursor** (``first_seq``, ``last_seq`` and the position after the window, which a restarted
  audio processor reads to resume a stream): from the event's ``cursor``. Events published before that
  field existed have none; their windows are written with the metadata they do carry (stream, window,
  time range, model) and counted as ``without_cursor``: a stream of such a window whose audio is replayed
  again has that window transcribed again (the store's documented fallback).

Not rebuilt, and not part of the checksum: ``transcripts.created_at`` (kept when the row exists, now()
when it is new) and ``embeddings.updated_at`` (moves on every upsert, so a FAISS index built before the
replay is seen as stale and rebuilt). Nothing is published: the replay stages no outbox row.

When a key appears more than once in the log (the at-least-once mode republishes a window whose commit
was lost) the last event wins, as in the live table. Writing is idempotent: replaying twice leaves the
same rows. A record that is not a valid event (never published by wavegraph) is skipped and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import numpy as np
import orjson
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from wavegraph.events import TranscriptEvent
from wavegraph.processors.audio.cursor import StreamPosition
from wavegraph.processors.embed_text import Embedder
from wavegraph.processors.graph_job.progress import JobProgress
from wavegraph.processors.replay.checksum import StoreChecksum, quantize
from wavegraph.processors.replay.log_reader import ReplayCounts, read_events
from wavegraph.settings import Settings
from wavegraph.sinks.transcripts import KIND, StoredWindow, TranscriptStore

__all__ = [
    "TranscriptReplay",
    "replay_transcripts",
    "stored_tenants",
    "stored_window",
    "transcript_checksum",
]


@dataclass
class TranscriptReplay(ReplayCounts):
    """What a replay read and wrote: the edge replay's counts, windows without a cursor, and why
    PostgreSQL refused windows (the first few)."""

    without_cursor: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _CursorlessWindow(StoredWindow):
    """A window from an event without ``cursor``: its metadata leaves the cursor out."""

    def metadata(self) -> bytes:
        return orjson.dumps(self.event_metadata())


async def replay_transcripts(
    settings: Settings,
    store: TranscriptStore,
    embedder: Embedder,
    *,
    tenant: str | None = None,
    progress: JobProgress | None = None,
) -> TranscriptReplay:
    """Replay the transcripts topic of ``settings`` into ``store`` (``tenant`` only, or all)."""
    out = TranscriptReplay()
    pairs = read_events(
        settings.kafka,
        settings.kafka.topics.transcripts,
        _decode,
        ValidationError,
        out,
        tenant=tenant,
        batch=settings.ingest.batch_size,
        progress=progress,
    )
    async for batch in pairs:
        latest: dict[tuple[str, str, int], TranscriptEvent] = {}
        for _, event in batch:
            key = (event.tenant, event.stream_id, event.window)
            latest.pop(key, None)  # the last event of a key wins, in log order
            latest[key] = event
        if latest:
            windows = await asyncio.to_thread(_windows, embedder, list(latest.values()))
            out.without_cursor += sum(e.cursor is None for e in latest.values())
            refused = await store.save(windows)
            bad = [reason for reason in refused if reason is not None]
            out.refused += len(bad)
            out.written += len(windows) - len(bad)
            out.reasons += bad[: max(0, 5 - len(out.reasons))]
    return out


def _decode(record: ConsumerRecord[bytes, bytes]) -> TranscriptEvent:
    return TranscriptEvent.model_validate_json(record.value or b"")


def _windows(embedder: Embedder, events: Sequence[TranscriptEvent]) -> list[StoredWindow]:
    return [stored_window(e, embedder.embed([e.text, *(s.text for s in e.segments)])) for e in events]


def stored_window(event: TranscriptEvent, vectors: np.ndarray) -> StoredWindow:
    """The rows the transcription sink stores for ``event``; ``vectors`` = embeddings of ``[text,
    *segments]``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape[0] != 1 + len(event.segments):
        raise ValueError(f"{vectors.shape[0]} vectors for a window of {len(event.segments)} segments")
    c = event.cursor
    if c is None:
        return _CursorlessWindow(event, -1, -1, StreamPosition(), vectors[0], vectors[1:])
    position = StreamPosition(c.next_seq, c.skip, c.start_s, c.next_window, c.final)
    return StoredWindow(event, c.first_seq, c.last_seq, position, vectors[0], vectors[1:])


# --- checksums ---------------------------------------------------------------------------------------

_TRANSCRIPTS = """
SELECT stream_id, window_index, start_s, end_s, text, model, device, processing_ms, xrt, event_id
FROM transcripts WHERE tenant = $1 ORDER BY stream_id, window_index
"""
_SEGMENTS = """
SELECT stream_id, window_index, segment, start_s, end_s, text, embedding
FROM transcript_segments WHERE tenant = $1 ORDER BY stream_id, window_index, segment
"""
_VECTORS = f"""
SELECT id, text, metadata, embedding FROM embeddings WHERE tenant = $1 AND kind = '{KIND}' ORDER BY id
"""
_TENANTS = f"""
SELECT tenant FROM transcripts UNION SELECT tenant FROM embeddings WHERE kind = '{KIND}' ORDER BY 1
"""


async def transcript_checksum(pool: asyncpg.Pool, tenant: str) -> StoreChecksum:
    """A tenant's transcripts, segments and window vectors (one snapshot), hashed as canonical JSON.

    Every column the transcription sink writes from the event, the segments with their vectors, and the
    ``embeddings`` rows (id, text, metadata, vector); vectors through
    :func:`~wavegraph.processors.replay.checksum.quantize`. Timestamps (``created_at``, ``updated_at``)
    are not part of it. ``pool`` must decode vectors (:func:`wavegraph.clients.pg_pool`).
    """
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        for name, query in (("transcripts", _TRANSCRIPTS), ("segments", _SEGMENTS), ("vectors", _VECTORS)):
            rows = [_canonical(dict(r)) for r in await conn.fetch(query, tenant)]
            counts[name] = len(rows)
            digest.update(name.encode())
            digest.update(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS))
    return StoreChecksum("postgres", tenant, counts, digest.hexdigest())


async def stored_tenants(pool: asyncpg.Pool) -> list[str]:
    """Every tenant with a transcript or a window vector."""
    return [r["tenant"] for r in await pool.fetch(_TENANTS)]


def _canonical(row: dict[str, object]) -> dict[str, object]:
    if row.get("embedding") is not None:
        row["embedding"] = quantize(_array(row["embedding"]))
    if isinstance(row.get("metadata"), str | bytes):
        row["metadata"] = orjson.loads(row["metadata"])  # type: ignore[arg-type]
    return row


def _array(value: object) -> np.ndarray:
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy is not None else value, dtype=np.float32)
