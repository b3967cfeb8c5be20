"""Transcribed windows in PostgreSQL/pgvector, written idempotently, one transaction per batch.

Tables (from ``migrations/postgres``): ``transcripts`` (one row per (tenant, stream, window)),
``transcript_segments`` (its segments, each with a MiniLM embedding) and ``embeddings`` (the vector
store, one row per window with ``kind = 'transcript'`` and ``id`` = the transcript's event id; its
``metadata`` holds the stream, window, time range and the stream's position after the window, see
:mod:`wavegraph.processors.audio.cursor`). Upserts use ``ON CONFLICT`` on each key, and a window's
segments are replaced as a whole, so writing the same window twice leaves one copy.

Writing is staged: :meth:`TranscriptStore.transaction` opens a transaction in which
:meth:`StagedWrite.write` upserts windows and reports, per window, whether PostgreSQL refused it for its
content; nothing is visible to others until :meth:`StagedWrite.commit`, and leaving the block without it
rolls everything back. The transcription sink publishes between the two, so a window PostgreSQL refuses
is never published, and a window whose partition was revoked meanwhile is never committed.

What PostgreSQL refuses for a window's *content* (a data error: SQLSTATE class 22 ``DataError``, e.g. a
NUL character in a text, a NaN or wrong-sized vector, a surrogate asyncpg cannot encode; class 23
``IntegrityConstraintViolationError``; class 54 ``ProgramLimitExceededError``) is isolated: the batch is
retried window by window, each under its own savepoint, and only the windows that fail again are
refused. Everything else (``OUTAGES``: connection errors, ``InterfaceError``, timeouts, ``OSError``, and
every other PostgreSQL error, such as a missing table or an admin shutdown, which no single window
causes) propagates.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import asyncpg
import numpy as np
import orjson
from aiokafka import TopicPartition
from asyncpg.transaction import Transaction

from wavegraph.clients import pg_pool
from wavegraph.errors import MissingPrerequisite
from wavegraph.events import TranscriptEvent
from wavegraph.processors.audio.cursor import StreamPosition
from wavegraph.settings import PostgresSettings
from wavegraph.sinks.outbox import PgOutbox
from wavegraph.sinks.outbox import stage as stage_outbox
from wavegraph.streams.transactions import OutboxRow

log = logging.getLogger(__name__)

KIND = "transcript"
TABLES = ("transcripts", "transcript_segments", "embeddings", "event_outbox")

DATA_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
"""PostgreSQL refused a row for its content: retrying it cannot help."""
OUTAGES: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
"""PostgreSQL cannot take any row now (checked after :data:`DATA_ERRORS`, which are PostgresErrors too)."""

_UPSERT_TRANSCRIPT = """
INSERT INTO transcripts (tenant, stream_id, window_index, start_s, end_s, text, model, device,
                         processing_ms, xrt, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (tenant, stream_id, window_index) DO UPDATE SET
    start_s = EXCLUDED.start_s, end_s = EXCLUDED.end_s, text = EXCLUDED.text, model = EXCLUDED.model,
    device = EXCLUDED.device, processing_ms = EXCLUDED.processing_ms, xrt = EXCLUDED.xrt,
    event_id = EXCLUDED.event_id
"""
_DELETE_SEGMENTS = (
    "DELETE FROM transcript_segments WHERE tenant = $1 AND stream_id = $2 AND window_index = $3"
)
_INSERT_SEGMENT = """
INSERT INTO transcript_segments (tenant, stream_id, window_index, segment, start_s, end_s, text, embedding)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
_UPSERT_EMBEDDING = f"""
INSERT INTO embeddings (tenant, kind, id, embedding, text, metadata)
VALUES ($1, '{KIND}', $2, $3, $4, $5::jsonb)
ON CONFLICT (tenant, kind, id) DO UPDATE SET
    embedding = EXCLUDED.embedding, text = EXCLUDED.text, metadata = EXCLUDED.metadata, updated_at = now()
"""
_POSITIONS = f"""
SELECT DISTINCT ON (t.tenant, t.stream_id) t.tenant, t.stream_id, t.window_index, e.metadata
FROM transcripts t
JOIN unnest($1::text[], $2::text[]) AS k(tenant, stream_id)
  ON t.tenant = k.tenant AND t.stream_id = k.stream_id
LEFT JOIN embeddings e ON e.tenant = t.tenant AND e.kind = '{KIND}' AND e.id = t.event_id
ORDER BY t.tenant, t.stream_id, t.window_index DESC
"""


@dataclass(frozen=True)
class StoredWindow:
    """A transcribed window with its embeddings and the stream's position after it."""

    event: TranscriptEvent
    first_seq: int
    last_seq: int
    position: StreamPosition
    embedding: np.ndarray
    """``(384,)``: the window's text."""
    segment_embeddings: np.ndarray
    """``(len(event.segments), 384)``."""

    def event_metadata(self) -> dict[str, object]:
        """The part of :meth:`metadata` the event alone gives."""
        e = self.event
        return {
            "stream_id": e.stream_id,
            "window": e.window,
            "start_s": e.start_s,
            "end_s": e.end_s,
            "model": e.model,
        }

    def metadata(self) -> bytes:
        return orjson.dumps(
            {
                **self.event_metadata(),
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "position": self.position.to_json(),
            }
        )


class TranscriptStore:
    """An asyncpg pool (with the pgvector codec) over the transcript tables; ``async with`` or ``close()``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, postgres: PostgresSettings) -> TranscriptStore:
        """Check that the migrations created the tables (else :class:`MissingPrerequisite`), then connect."""
        conn = await asyncpg.connect(postgres.url)
        try:
            await check_schema(conn)
        finally:
            await conn.close()
        return cls(await pg_pool(postgres, max_size=2))

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._pool.close()

    async def __aenter__(self) -> TranscriptStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def positions(self, streams: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StreamPosition]:
        """The stored position of each ``(tenant, stream_id)`` that has a window; others are absent."""
        if not streams:
            return {}
        rows = await self._pool.fetch(_POSITIONS, [t for t, _ in streams], [s for _, s in streams])
        found: dict[tuple[str, str], StreamPosition] = {}
        for row in rows:
            key = (row["tenant"], row["stream_id"])
            found[key] = _position(row["window_index"], row["metadata"], key)
        return found

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StagedWrite]:
        """A transaction to stage windows in; rolled back unless :meth:`StagedWrite.commit` was called."""
        async with self._pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            staged = StagedWrite(conn, tx)
            try:
                yield staged
            finally:
                if not staged.committed:
                    try:
                        await tx.rollback()
                    except OUTAGES as exc:  # the connection is gone: nothing was committed anyway
                        log.debug("rollback failed: %r", exc)

    def outbox(self) -> PgOutbox:
        """The event outbox in the same database (:mod:`wavegraph.sinks.outbox`)."""
        return PgOutbox(self._pool)

    async def save(self, windows: Sequence[StoredWindow]) -> list[str | None]:
        """Upsert ``windows`` in one transaction; per window None, or why PostgreSQL refused it."""
        async with self.transaction() as tx:
            refused = await tx.write(windows)
            await tx.commit()
        return refused


class StagedWrite:
    """Windows written inside one open transaction (see :meth:`TranscriptStore.transaction`)."""

    def __init__(self, conn: asyncpg.Connection, tx: Transaction) -> None:
        self._conn = conn
        self._tx = tx
        self.committed = False

    async def write(self, windows: Sequence[StoredWindow]) -> list[str | None]:
        """Upsert ``windows`` (in order); per window None, or the reason PostgreSQL refused its content.

        The batch is tried at once; on a data error every window is tried alone under a savepoint, so
        one bad window never blocks the others. Outages propagate (see the module docstring).
        """
        if not windows:
            return []
        try:
            async with self._conn.transaction():  # a savepoint: a refusal leaves the outer one usable
                await _upsert(self._conn, windows)
            return [None] * len(windows)
        except DATA_ERRORS as exc:
            if len(windows) == 1:
                return [_describe(exc)]
        out: list[str | None] = []
        for window in windows:
            try:
                async with self._conn.transaction():
                    await _upsert(self._conn, [window])
                out.append(None)
            except DATA_ERRORS as exc:
                out.append(_describe(exc))
        return out

    async def stage_events(self, group: str, tp: TopicPartition, rows: Sequence[OutboxRow]) -> None:
        """Stage ``rows`` in the event outbox in this transaction (:mod:`wavegraph.sinks.outbox`)."""
        await stage_outbox(self._conn, group, tp, rows)

    async def commit(self) -> None:
        """Make what was written visible; after this the block no longer rolls back."""
        await self._tx.commit()
        self.committed = True


async def _upsert(conn: asyncpg.Connection, windows: Sequence[StoredWindow]) -> None:
    transcripts: list[tuple[Any, ...]] = []
    keys: list[tuple[Any, ...]] = []
    segments: list[tuple[Any, ...]] = []
    embeddings: list[tuple[Any, ...]] = []
    for w in windows:
        e = w.event
        transcripts.append(
            (
                e.tenant,
                e.stream_id,
                e.window,
                e.start_s,
                e.end_s,
                e.text,
                e.model,
                e.device,
                e.processing_ms,
                e.xrt,
                e.event_id,
            )
        )
        keys.append((e.tenant, e.stream_id, e.window))
        for i, (seg, vec) in enumerate(zip(e.segments, w.segment_embeddings, strict=True)):
            end = max(seg.end_s, seg.start_s)
            segments.append((e.tenant, e.stream_id, e.window, i, seg.start_s, end, seg.text, vec))
        embeddings.append((e.tenant, e.event_id, w.embedding, e.text, w.metadata().decode()))
    await conn.executemany(_UPSERT_TRANSCRIPT, transcripts)
    await conn.executemany(_DELETE_SEGMENTS, keys)
    if segments:
        await conn.executemany(_INSERT_SEGMENT, segments)
    await conn.executemany(_UPSERT_EMBEDDING, embeddings)


def _describe(exc: Exception) -> str:
    """``ClassName: first line of the message`` (asyncpg messages may span lines with DETAIL)."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0] if message else ''}"[:300]


async def check_schema(conn: asyncpg.Connection) -> None:
    """Raise :class:`MissingPrerequisite` unless the transcript tables exist."""
    row = await conn.fetchrow("SELECT " + ", ".join(f"to_regclass('{t}') IS NOT NULL AS {t}" for t in TABLES))
    missing = [t for t in TABLES if row is None or not row[t]]
    if missing:
        raise MissingPrerequisite(
            f"PostgreSQL has no table {', '.join(missing)}: run `wavegraph migrate apply`"
        )


def _position(window_index: int, metadata: str | None, key: tuple[str, str]) -> StreamPosition:
    try:
        return StreamPosition.from_json(orjson.loads(metadata or "{}")["position"])
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        log.warning(
            "stream %s/%s: window %d has no stored position; numbering continues after it, but its "
            "replayed audio is transcribed again",
            *key,
            window_index,
        )
        return StreamPosition(next_window=window_index + 1)
