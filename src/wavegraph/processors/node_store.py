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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import numpy as np
import numpy.typing as npt
from neo4j import AsyncDriver
from pgvector.asyncpg import register_vector

from wavegraph.settings import PostgresSettings

__all__ = ["EmbeddingStore", "NodeRows", "NodeStore", "open_pool"]

Advance = Callable[[int], None]

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

    async def write(self, rows: NodeRows, advance: Advance | None = None) -> None:
        """Store every row (idempotent); ``advance(k)`` after each ``k`` rows written to one database."""
        ...


async def open_pool(postgres: PostgresSettings) -> asyncpg.Pool:
    """A small asyncpg pool whose connections know the ``vector`` type."""
    return await asyncpg.create_pool(postgres.url, min_size=1, max_size=2, init=register_vector)


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

    async def write(self, rows: NodeRows, advance: Advance | None = None) -> None:
        await self.write_neo4j(rows, advance)
        await self.write_postgres(rows, advance)

    async def write_neo4j(self, rows: NodeRows, advance: Advance | None = None) -> None:
        for lo in range(0, len(rows), self.chunk):
            hi = min(lo + self.chunk, len(rows))
            batch: list[dict[str, Any]] = [
                {"id": node, "haa": vec, "pr": pr}
                for node, vec, pr in zip(
                    rows.node_ids[lo:hi], rows.haa[lo:hi].tolist(), rows.pagerank[lo:hi].tolist(), strict=True
                )
            ]
            await self.driver.execute_query(
                NEO4J_SET, rows=batch, tenant=rows.tenant, version=rows.version, database_=self.database
            )
            if advance is not None:
                advance(hi - lo)

    async def write_postgres(self, rows: NodeRows, advance: Advance | None = None) -> None:
        async with self.pool.acquire() as conn:
            for lo in range(0, len(rows), self.chunk):
                hi = min(lo + self.chunk, len(rows))
                args = [
                    (rows.tenant, node, emb, vec, pr, rows.version)
                    for node, emb, vec, pr in zip(
                        rows.node_ids[lo:hi],
                        rows.embedding[lo:hi],
                        rows.haa[lo:hi],
                        rows.pagerank[lo:hi].tolist(),
                        strict=True,
                    )
                ]
                async with conn.transaction():
                    await conn.executemany(PG_UPSERT, args)
                if advance is not None:
                    advance(hi - lo)
