"""The pgvector store: embeddings of any kind keyed by (tenant, kind, id) in PostgreSQL.

- Connections come from an asyncpg pool whose ``init`` registers the pgvector binary codec
  (:func:`wavegraph.clients.pg_pool`); a pool made elsewhere must use its ``init`` too.
- :meth:`PgVectorStore.upsert` is idempotent: one ``INSERT … ON CONFLICT (tenant, kind, id) DO UPDATE``
  through ``executemany`` (the latest value wins, ``updated_at`` moves).
- :meth:`PgVectorStore.bulk_load` is the backfill path: binary ``COPY`` (``copy_records_to_table``) in
  batches, one transaction each. When the table is empty at the start the batches are copied straight in;
  otherwise (or when a straight batch hits an existing key) a batch goes to a temporary table first and
  is merged with ``INSERT … SELECT DISTINCT ON (key) … ON CONFLICT DO UPDATE`` (the last duplicate wins).
- :meth:`PgVectorStore.nearest` returns the k nearest rows of one tenant (and kind, and metadata
  containment filter) by cosine distance ``<=>``, in a transaction that sets ``ivfflat.probes`` and
  ``hnsw.ef_search`` with ``SET LOCAL`` semantics (``set_config(…, true)``) from the settings or the call.
  Iterative index scans (pgvector ≥ 0.8, ``relaxed_order``) are on, so a tenant filter that rejects most
  of the scanned lists/graph still yields k rows; the CTE re-sorts the relaxed order exactly. ``k`` is
  spliced into the SQL as a checked integer: with ``LIMIT $n`` a generic plan assumes 10 % of the table
  and may pick a sequential scan.
- ``index_storage="halfvec"`` ranks by ``embedding::halfvec(dim) <=> …``, the expression a halfvec index
  (:func:`wavegraph.sinks.pgvector_ddl.create_index` with ``storage="halfvec"``) serves: half the index
  pages per probe; the ``distance`` returned is still the exact float32 one. Without that index the
  expression has no index and every query is an exact sort, so it is a constructor choice, not a setting.
- :meth:`PgVectorStore.explain_nearest` is :meth:`nearest`'s plan under ``EXPLAIN (ANALYZE, BUFFERS)``:
  the pages a query really reads (the bench's bytes-per-query figure).
- Every query observes ``pgvector_query_ms`` and sets ``pgvector_last_query_ms``.
- :meth:`PgVectorStore.iter_batches` streams every row through a server-side cursor (the FAISS rebuild);
  :meth:`PgVectorStore.stamp` (row count, max ``updated_at``) tells whether a FAISS copy is stale.

The table is ``embeddings`` from the migrations; benches and tests use their own table of the same shape
(:mod:`wavegraph.sinks.pgvector_ddl`). Bad vectors raise :class:`~wavegraph.sinks.vectors.InvalidVector`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import asyncpg
import numpy as np
import orjson

from wavegraph import metrics
from wavegraph.clients import pg_pool
from wavegraph.settings import Settings
from wavegraph.sinks.pgvector_ddl import Storage, check_ident, order_expr
from wavegraph.sinks.vectors import InvalidVector, check_matrix, check_vector

__all__ = [
    "MAX_K",
    "PgHit",
    "PgVectorStore",
    "RowBatch",
    "SourceStamp",
    "VectorRecord",
]

MAX_K = 1000
# per-query index knobs, SET LOCAL semantics (the third argument of set_config)
_KNOBS = (
    "SELECT set_config('ivfflat.probes', $1, true), set_config('hnsw.ef_search', $2, true),"
    " set_config('ivfflat.iterative_scan', 'relaxed_order', true),"
    " set_config('hnsw.iterative_scan', 'relaxed_order', true)"
)
_COLUMNS = ("tenant", "kind", "id", "embedding", "text", "metadata")


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """One row to store. ``metadata`` must be JSON-serialisable (a mapping; queried with ``@>``)."""

    tenant: str
    kind: str
    id: str
    vector: Any
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PgHit:
    """A nearest row: cosine ``distance`` in [0, 2] (similarity = 1 - distance)."""

    kind: str
    id: str
    distance: float
    text: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RowBatch:
    """A batch of stored rows: parallel key lists, their ``(n, dim)`` float32 vectors and the newest
    ``updated_at`` among them."""

    tenants: list[str]
    kinds: list[str]
    ids: list[str]
    vectors: np.ndarray
    max_updated_at: dt.datetime | None = None

    def rows(self) -> Iterable[tuple[str, str, str, np.ndarray]]:
        """``(tenant, kind, id, vector)`` tuples, the shape the FAISS rebuild takes."""
        return zip(self.tenants, self.kinds, self.ids, self.vectors, strict=True)


@dataclass(frozen=True, slots=True)
class SourceStamp:
    """What a derived index was built from: the row count and the newest ``updated_at``."""

    count: int
    max_updated_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        ts = self.max_updated_at.isoformat() if self.max_updated_at is not None else None
        return {"count": self.count, "max_updated_at": ts}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceStamp:
        ts = data.get("max_updated_at")
        return cls(int(data["count"]), dt.datetime.fromisoformat(ts) if ts else None)


def _json(metadata: Mapping[str, Any] | None) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return orjson.dumps(metadata).decode()


def _observe(started: float) -> None:
    ms = (time.perf_counter() - started) * 1000.0
    metrics.PGVECTOR_QUERY_MS.observe(ms)
    metrics.PGVECTOR_LAST_QUERY_MS.set(ms)


class PgVectorStore:
    """Upserts, COPY backfills and filtered nearest-k over one embeddings table (see the module doc).

    ``pool`` is borrowed when given (from :func:`wavegraph.clients.pg_pool`), else :meth:`open` creates one
    and :meth:`close` closes it; closing twice is safe. Use ``async with PgVectorStore(settings) as s``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        table: str = "embeddings",
        pool: asyncpg.Pool | None = None,
        index_storage: Storage = "vector",
    ) -> None:
        self.settings = settings
        self.dim = settings.vector.dim
        self.table = check_ident(table)
        self.index_storage = index_storage
        self._order = order_expr(index_storage, self.dim)
        self._pool = pool
        self._owns_pool = pool is None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> Self:
        if self._pool is None:
            self._pool = await pg_pool(self.settings.postgres)
        self._closed = False
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PgVectorStore is not open: use `async with` or await open()")
        return self._pool

    # --- writes -------------------------------------------------------------------------------
    def _row(self, rec: VectorRecord) -> tuple[Any, ...]:
        what = f"vector of ({rec.tenant!r}, {rec.kind!r}, {rec.id!r})"
        vec = check_vector(rec.vector, self.dim, what)
        return (rec.tenant, rec.kind, rec.id, vec, rec.text, _json(rec.metadata))

    async def upsert(self, records: Sequence[VectorRecord]) -> int:
        """Insert or update ``records`` (one ``executemany``); returns how many were sent."""
        rows = [self._row(r) for r in records]
        if not rows:
            return 0
        sql = (
            f"INSERT INTO {self.table} (tenant, kind, id, embedding, text, metadata) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb) "
            "ON CONFLICT (tenant, kind, id) DO UPDATE SET embedding = EXCLUDED.embedding, "
            "text = EXCLUDED.text, metadata = EXCLUDED.metadata, updated_at = now()"
        )
        async with self.pool.acquire() as conn:
            await conn.executemany(sql, rows)
        return len(rows)

    async def delete(self, tenant: str, kind: str | None = None, ids: Sequence[str] | None = None) -> int:
        """Delete a tenant's rows (of ``kind``, with ``ids``); returns the number deleted."""
        where, args = self._where(tenant, kind, None)
        if ids is not None:
            args.append(list(ids))
            where += f" AND id = ANY(${len(args)}::text[])"
        async with self.pool.acquire() as conn:
            status = await conn.execute(f"DELETE FROM {self.table} WHERE {where}", *args)
        return int(status.split()[-1])

    async def bulk_load(
        self,
        records: Iterable[VectorRecord],
        *,
        batch_size: int = 20_000,
        on_progress: Callable[[int], None] | None = None,
        analyze: bool = True,
    ) -> int:
        """Backfill ``records`` through binary COPY, ``batch_size`` rows per transaction (see the module
        doc); ``on_progress(n)`` after each batch. Returns the number of records read.

        ``analyze`` runs ``ANALYZE`` afterwards: without fresh statistics the planner underestimates a
        tenant's rows and sorts them all exactly instead of using the vector index.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        total = 0
        async with self.pool.acquire() as conn:
            straight = await conn.fetchval(f"SELECT NOT EXISTS (SELECT 1 FROM {self.table})")
            it = iter(records)
            while batch := list(itertools.islice(it, batch_size)):
                rows = self._batch_rows(batch)
                if straight:
                    try:
                        async with conn.transaction():
                            await conn.copy_records_to_table(self.table, records=rows, columns=_COLUMNS)
                    except asyncpg.UniqueViolationError:
                        straight = False
                if not straight:
                    await self._merge_batch(conn, rows)
                total += len(rows)
                if on_progress is not None:
                    on_progress(len(rows))
            if analyze and total:
                await conn.execute(f"ANALYZE {self.table}")
        return total

    def _batch_rows(self, batch: list[VectorRecord]) -> list[tuple[Any, ...]]:
        try:
            stacked = np.stack([np.asarray(r.vector, dtype=np.float32) for r in batch])
        except ValueError:
            stacked = None
        if stacked is None or stacked.ndim != 2:  # ragged or odd shapes: let the row check name the row
            return [self._row(r) for r in batch]
        try:
            vecs = check_matrix(stacked, self.dim)
        except InvalidVector:
            return [self._row(r) for r in batch]
        return [
            (r.tenant, r.kind, r.id, v, r.text, _json(r.metadata)) for r, v in zip(batch, vecs, strict=True)
        ]

    async def _merge_batch(self, conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE wavegraph_load (tenant text, kind text, id text, "
                f"embedding vector({self.dim}), text text, metadata jsonb, ord bigint) ON COMMIT DROP"
            )
            await conn.copy_records_to_table(
                "wavegraph_load",
                records=[(*r, i) for i, r in enumerate(rows)],
                columns=(*_COLUMNS, "ord"),
            )
            await conn.execute(
                f"INSERT INTO {self.table} (tenant, kind, id, embedding, text, metadata) "
                "SELECT DISTINCT ON (tenant, kind, id) tenant, kind, id, embedding, text, metadata "
                "FROM wavegraph_load ORDER BY tenant, kind, id, ord DESC "
                "ON CONFLICT (tenant, kind, id) DO UPDATE SET embedding = EXCLUDED.embedding, "
                "text = EXCLUDED.text, metadata = EXCLUDED.metadata, updated_at = now()"
            )

    # --- reads --------------------------------------------------------------------------------
    @staticmethod
    def _where(
        tenant: str, kind: str | None, filters: Mapping[str, Any] | None, first: int = 1, alias: str = ""
    ) -> tuple[str, list[Any]]:
        """A WHERE clause on tenant (and kind, and metadata containment), parameters from ``$first``."""
        args: list[Any] = [tenant]
        where = f"{alias}tenant = ${first}"
        if kind is not None:
            args.append(kind)
            where += f" AND {alias}kind = ${first + len(args) - 1}"
        if filters:
            args.append(_json(filters))
            where += f" AND {alias}metadata @> ${first + len(args) - 1}::jsonb"
        return where, args

    async def nearest(
        self,
        tenant: str,
        vector: Any,
        k: int = 10,
        *,
        kind: str | None = None,
        filters: Mapping[str, Any] | None = None,
        probes: int | None = None,
        ef_search: int | None = None,
    ) -> list[PgHit]:
        """The ``k`` rows of ``tenant`` nearest to ``vector`` by cosine distance, nearest first.

        ``filters`` is a JSON object the row's ``metadata`` must contain (``@>``). ``probes`` /
        ``ef_search`` override ``settings.vector.probes`` / ``ef_search`` for this query.
        """
        started = time.perf_counter()
        try:
            sql, args, knobs = self._nearest_sql(tenant, vector, k, kind, filters, probes, ef_search)
            async with self._tuned(knobs) as conn:
                records = await conn.fetch(sql, *args)
        finally:
            _observe(started)
        return [
            PgHit(r["kind"], r["id"], float(r["distance"]), r["text"], orjson.loads(r["metadata"]))
            for r in records
        ]

    async def explain_nearest(
        self,
        tenant: str,
        vector: Any,
        k: int = 10,
        *,
        kind: str | None = None,
        filters: Mapping[str, Any] | None = None,
        probes: int | None = None,
        ef_search: int | None = None,
    ) -> dict[str, Any]:
        """The JSON plan (``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``, its one entry) of :meth:`nearest` with
        the same arguments: it runs the query, and its ``Shared Hit Blocks`` + ``Shared Read Blocks`` are
        the 8 kB pages the query touched."""
        sql, args, knobs = self._nearest_sql(tenant, vector, k, kind, filters, probes, ef_search)
        async with self._tuned(knobs) as conn:
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        top: dict[str, Any] = orjson.loads(plan)[0]
        return top

    @asynccontextmanager
    async def _tuned(self, knobs: tuple[str, str]) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in a transaction whose index knobs (probes, ef_search) are set locally."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_KNOBS, *knobs)
            yield conn

    def _nearest_sql(
        self,
        tenant: str,
        vector: Any,
        k: int,
        kind: str | None,
        filters: Mapping[str, Any] | None,
        probes: int | None,
        ef_search: int | None,
    ) -> tuple[str, list[Any], tuple[str, str]]:
        """The nearest-k SQL, its arguments and the (probes, ef_search) for :data:`_KNOBS`."""
        vec = check_vector(vector, self.dim)
        if not 1 <= int(k) <= MAX_K:
            raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
        probes = int(self.settings.vector.probes if probes is None else probes)
        ef_search = int(self.settings.vector.ef_search if ef_search is None else ef_search)
        if probes < 1 or ef_search < 1:
            raise ValueError(f"probes and ef_search must be >= 1, got {probes} and {ef_search}")
        where, args = self._where(tenant, kind, filters, first=2)
        sql = (
            f"WITH hits AS MATERIALIZED (SELECT kind, id, embedding <=> $1 AS distance, text, "
            f"metadata::text AS metadata FROM {self.table} WHERE {where} "
            f"ORDER BY {self._order} LIMIT {int(k)}) SELECT * FROM hits ORDER BY distance"
        )
        return sql, [vec, *args], (str(probes), str(ef_search))

    async def fetch(
        self,
        tenant: str,
        keys: Sequence[tuple[str, str]],
        *,
        filters: Mapping[str, Any] | None = None,
    ) -> dict[tuple[str, str], tuple[str | None, dict[str, Any]]]:
        """``{(kind, id): (text, metadata)}`` for those ``keys`` of ``tenant`` that exist (and match
        ``filters``); how the search API attaches text to FAISS hits and drops ones deleted since."""
        if not keys:
            return {}
        where, args = self._where(tenant, None, filters, first=3, alias="e.")
        sql = (
            f"SELECT e.kind, e.id, e.text, e.metadata::text AS metadata FROM {self.table} e "
            "JOIN unnest($1::text[], $2::text[]) AS k(kind, id) ON e.kind = k.kind AND e.id = k.id "
            f"WHERE {where}"
        )
        async with self.pool.acquire() as conn:
            records = await conn.fetch(sql, [k for k, _ in keys], [i for _, i in keys], *args)
        return {(r["kind"], r["id"]): (r["text"], orjson.loads(r["metadata"])) for r in records}

    async def count(self, tenant: str | None = None) -> int:
        async with self.pool.acquire() as conn:
            if tenant is None:
                return int(await conn.fetchval(f"SELECT count(*) FROM {self.table}"))
            return int(await conn.fetchval(f"SELECT count(*) FROM {self.table} WHERE tenant = $1", tenant))

    async def stamp(self) -> SourceStamp:
        """Row count and newest ``updated_at`` of the whole table."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT count(*) AS n, max(updated_at) AS ts FROM {self.table}")
        assert row is not None
        return SourceStamp(int(row["n"]), row["ts"])

    async def iter_batches(self, batch_size: int = 10_000) -> AsyncIterator[RowBatch]:
        """Every row as :class:`RowBatch` es of up to ``batch_size``, through a server-side cursor in one
        read-only repeatable-read transaction (a consistent snapshot)."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            cur = await conn.cursor(f"SELECT tenant, kind, id, embedding, updated_at FROM {self.table}")
            while records := await cur.fetch(batch_size):
                vectors = np.empty((len(records), self.dim), dtype=np.float32)
                for i, r in enumerate(records):
                    vectors[i] = r["embedding"].to_numpy()
                yield RowBatch(
                    [r["tenant"] for r in records],
                    [r["kind"] for r in records],
                    [r["id"] for r in records],
                    vectors,
                    max(r["updated_at"] for r in records),
                )

    async def iter_rows(self, batch_size: int = 10_000) -> AsyncIterator[tuple[str, str, str, np.ndarray]]:
        """Every row as ``(tenant, kind, id, vector)`` (see :meth:`iter_batches`)."""
        async for batch in self.iter_batches(batch_size):
            for row in batch.rows():
                yield row
