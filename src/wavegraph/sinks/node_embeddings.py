"""Where the graph job stores a recompute: node properties in Neo4j and rows in PostgreSQL (pgvector).

- Neo4j: ``(:Node {tenant, id})`` gets ``haa`` (a list of floats, indexed by the ``node_haa`` vector
  index), ``pagerank`` and ``embedding_version``; one ``UNWIND`` query per chunk of rows. ``MERGE`` on
  ``(tenant, id)`` (unique since migration V2025.07) so a node the edge processor has not written yet
  is created, not duplicated.
- PostgreSQL: ``node_embeddings (tenant, node)`` gets ``embedding`` (the Poincaré point), ``haa``,
  ``pagerank`` and ``version``, with ``INSERT … ON CONFLICT (tenant, node) DO UPDATE`` (``executemany``
  per chunk; vectors through the pgvector codec).

Both writes are idempotent, and both refuse to go back in time: a row or node already at a newer
embedding version is left alone, so a slow, older recompute cannot overwrite a newer one.

A value a database refuses for good — PostgreSQL's data errors (class 22: a NUL in a node id, a NaN in
a vector, a dimension other than the column's) and integrity errors (class 23: the ``pagerank >= 0``
CHECK), Neo4j's type and constraint errors — loses only its row: the chunk is split in halves and
written again until the refused rows are alone; they are skipped, counted in the return value of
:meth:`NodeStore.write` and logged (one warning per write, each row at DEBUG). Anything else (a
database down, a missing table) propagates: the recompute retries it later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import numpy as np
import numpy.typing as npt
from neo4j import AsyncDriver
from neo4j.exceptions import ConstraintError, CypherTypeError

__all__ = ["EmbeddingStore", "NodeRows", "NodeStore"]

log = logging.getLogger(__name__)

Advance = Callable[[int], None]
PgRow = tuple[str, str, Any, Any, float, int]
Neo4jRow = dict[str, Any]

PG_REFUSALS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
NEO4J_REFUSALS = (CypherTypeError, ConstraintError)

NEO4J_SET = """
UNWIND $rows AS row
MERGE (n:Node {tenant: $tenant, id: row.id})
WITH n, row WHERE n.embedding_version IS NULL OR n.embedding_version <= $version
SET n.haa = row.haa, n.pagerank = row.pr, n.embedding_version = $version
"""

PG_UPSERT = """
INSERT INTO node_embeddings AS e (tenant, node, embedding, haa, pagerank, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (tenant, node) DO UPDATE
SET embedding = EXCLUDED.embedding, haa = EXCLUDED.haa, pagerank = EXCLUDED.pagerank,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
WHERE e.version <= EXCLUDED.version
"""

PG_VERSIONS = "SELECT tenant, max(version) AS version FROM node_embeddings GROUP BY tenant"


@dataclass(frozen=True)
class NodeRows:
    """One recompute of one tenant: ``node_ids[i]`` has ``pagerank[i]``, ``embedding[i]``, ``haa[i]``."""

    tenant: str
    version: int
    node_ids: list[str]
    pagerank: npt.NDArray[np.float64]
    embedding: npt.NDArray[np.float32]
    haa: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.node_ids)


class EmbeddingStore(Protocol):
    async def latest_versions(self) -> dict[str, int]:
        """The newest stored embedding version per tenant."""
        ...

    async def write(self, rows: NodeRows, advance: Advance | None = None) -> int:
        """Store every row (idempotent); ``advance(k)`` after each ``k`` rows written to one database.

        Returns how many rows a database refused for good (they are skipped); raises when a database
        cannot be written at all (the caller retries)."""
        ...


class NodeStore:
    """:class:`EmbeddingStore` on Neo4j and PostgreSQL (see the module docstring)."""

    def __init__(
        self, driver: AsyncDriver, pool: asyncpg.Pool, *, chunk: int = 1000, database: str | None = None
    ) -> None:
        self.driver = driver
        self.pool = pool
        self.chunk = chunk
        self.database = database

    async def latest_versions(self) -> dict[str, int]:
        async with self.pool.acquire() as conn:
            records = await conn.fetch(PG_VERSIONS)
        return {r["tenant"]: int(r["version"]) for r in records}

    async def write(self, rows: NodeRows, advance: Advance | None = None) -> int:
        refused = await self.write_neo4j(rows, advance)
        refused += await self.write_postgres(rows, advance)
        return refused

    async def write_neo4j(self, rows: NodeRows, advance: Advance | None = None) -> int:
        """Set the rows' node properties in Neo4j; return how many rows it refused."""
        refusals = _Refusals("Neo4j", rows)
        for lo in range(0, len(rows), self.chunk):
            hi = min(lo + self.chunk, len(rows))
            batch: list[Neo4jRow] = [
                {"id": node, "haa": vec, "pr": pr}
                for node, vec, pr in zip(
                    rows.node_ids[lo:hi], rows.haa[lo:hi].tolist(), rows.pagerank[lo:hi].tolist(), strict=True
                )
            ]
            await self._neo4j_rows(rows, batch, refusals)
            if advance is not None:
                advance(hi - lo)
        return refusals.done()

    async def _neo4j_rows(self, rows: NodeRows, batch: Sequence[Neo4jRow], refusals: _Refusals) -> None:
        try:
            await self.driver.execute_query(
                NEO4J_SET, rows=batch, tenant=rows.tenant, version=rows.version, database_=self.database
            )
        except NEO4J_REFUSALS as exc:
            if len(batch) == 1:
                refusals.add(batch[0]["id"], exc)
                return
            mid = len(batch) // 2
            await self._neo4j_rows(rows, batch[:mid], refusals)
            await self._neo4j_rows(rows, batch[mid:], refusals)

    async def write_postgres(self, rows: NodeRows, advance: Advance | None = None) -> int:
        """Upsert the rows into ``node_embeddings``; return how many rows PostgreSQL refused."""
        refusals = _Refusals("PostgreSQL", rows)
        async with self.pool.acquire() as conn:
            for lo in range(0, len(rows), self.chunk):
                hi = min(lo + self.chunk, len(rows))
                args: list[PgRow] = [
                    (rows.tenant, node, emb, vec, pr, rows.version)
                    for node, emb, vec, pr in zip(
                        rows.node_ids[lo:hi],
                        rows.embedding[lo:hi],
                        rows.haa[lo:hi],
                        rows.pagerank[lo:hi].tolist(),
                        strict=True,
                    )
                ]
                await _pg_rows(conn, args, refusals)
                if advance is not None:
                    advance(hi - lo)
        return refusals.done()


async def _pg_rows(conn: asyncpg.Connection, args: Sequence[PgRow], refusals: _Refusals) -> None:
    """Write ``args`` in one transaction; on a refusal, each half in its own (see the module docstring)."""
    try:
        async with conn.transaction():
            await conn.executemany(PG_UPSERT, args)
    except PG_REFUSALS as exc:
        if len(args) == 1:
            refusals.add(args[0][1], exc)
            return
        mid = len(args) // 2
        await _pg_rows(conn, args[:mid], refusals)
        await _pg_rows(conn, args[mid:], refusals)


class _Refusals:
    """The rows one database refused during one write: counted, logged once."""

    def __init__(self, database: str, rows: NodeRows) -> None:
        self.database = database
        self.rows = rows
        self.count = 0
        self.first: tuple[str, Exception] | None = None

    def add(self, node: str, exc: Exception) -> None:
        self.count += 1
        self.first = self.first or (node, exc)
        log.debug(
            "%s refused node %s/%r (v%d): %s", self.database, self.rows.tenant, node, self.rows.version, exc
        )

    def done(self) -> int:
        if self.first is not None:
            node, exc = self.first
            log.warning(
                "%s refused %d of %d rows of %s v%d, skipped them (first: %r: %s)",
                self.database,
                self.count,
                len(self.rows),
                self.rows.tenant,
                self.rows.version,
                node,
                exc,
            )
        return self.count
