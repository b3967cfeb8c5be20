"""DDL for pgvector tables and indexes: what the bench, the tests and backfills create and drop.

The production table ``embeddings`` comes from the migrations; :func:`create_table` makes a private table
of the same shape (no vector index) for benches and tests. Index builds:

- ``ivfflat`` (``lists``): k-means centres from a sample of the rows present at build time, so build it
  after a backfill (an ivfflat index built on an empty table has random centres and poor recall:
  :func:`reindex` rebuilds it). Its k-means needs ``maintenance_work_mem`` for 50 sample rows per list
  plus a float per (sample, list): the 64 MB default covers lists = 100 but not 1,000 (~280 MB at 384-d);
- ``hnsw`` (``m``, ``ef_construction``): a graph; builds far slower than ivfflat but answers with a
  better recall/latency trade-off. Its build is much faster while the graph fits in
  ``maintenance_work_mem`` (pass e.g. ``"2GB"`` for a million 384-d rows).

Both rank by cosine ``<=>`` (the store's distance). ``storage="vector"`` indexes the float32 column
(``vector_cosine_ops``); ``storage="halfvec"`` indexes the expression ``embedding::halfvec(dim)`` with
``halfvec_cosine_ops``: half the index pages, the column stays float32 (the store then orders by the same
expression and reports the exact float32 distance, see :class:`~wavegraph.sinks.pgvector.PgVectorStore`).
Table and index names are checked against ``[a-z_][a-z0-9_]*`` before they are spliced into SQL.
"""

from __future__ import annotations

import re
import time
from typing import Literal

import asyncpg

__all__ = [
    "IndexMethod",
    "Storage",
    "check_ident",
    "create_index",
    "create_table",
    "drop_index",
    "drop_table",
    "order_expr",
    "reindex",
    "vector_indexes",
]

IndexMethod = Literal["ivfflat", "hnsw"]
Storage = Literal["vector", "halfvec"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MEMORY = re.compile(r"^[0-9]+\s*(kB|MB|GB)$")


def check_ident(name: str) -> str:
    """``name`` if it is a plain lower-case SQL identifier, else ``ValueError``."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain lower-case SQL identifier: {name!r}")
    return name


def order_expr(storage: Storage, dim: int, param: str = "$1") -> str:
    """The cosine ``ORDER BY`` expression an index of ``storage`` serves (``param`` is a ``vector``)."""
    if storage == "vector":
        return f"embedding <=> {param}"
    if storage == "halfvec":
        return f"embedding::halfvec({int(dim)}) <=> ({param}::vector)::halfvec({int(dim)})"
    raise ValueError(f"storage must be 'vector' or 'halfvec', got {storage!r}")


async def create_table(db: asyncpg.Pool, table: str, dim: int) -> None:
    """Create ``table`` with the columns and key of ``embeddings`` (no vector index) if missing."""
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS {check_ident(table)} ("
        "tenant text NOT NULL, kind text NOT NULL, id text NOT NULL, "
        f"embedding vector({int(dim)}) NOT NULL, text text, "
        "metadata jsonb NOT NULL DEFAULT '{}'::jsonb, updated_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (tenant, kind, id))"
    )


async def drop_table(db: asyncpg.Pool, table: str) -> None:
    await db.execute(f"DROP TABLE IF EXISTS {check_ident(table)}")


async def create_index(
    db: asyncpg.Pool,
    table: str,
    method: IndexMethod,
    *,
    lists: int = 100,
    m: int = 16,
    ef_construction: int = 64,
    name: str | None = None,
    maintenance_work_mem: str | None = None,
    storage: Storage = "vector",
    dim: int | None = None,
) -> tuple[str, float]:
    """Build a cosine ``method`` index on ``table.embedding``; returns ``(index name, build seconds)``.

    ``maintenance_work_mem`` (e.g. ``"1GB"``) is set for the build's connection only. ``storage="halfvec"``
    indexes ``embedding::halfvec(dim)`` (``dim`` required; see the module doc).
    """
    check_ident(table)
    if method == "ivfflat":
        if lists < 1:
            raise ValueError(f"lists must be >= 1, got {lists}")
        with_ = f"lists = {int(lists)}"
        default = f"{table}_ivfflat_{int(lists)}"
    elif method == "hnsw":
        if m < 2 or ef_construction < 2 * m:
            raise ValueError(f"hnsw needs m >= 2 and ef_construction >= 2*m, got m={m}, {ef_construction}")
        with_ = f"m = {int(m)}, ef_construction = {int(ef_construction)}"
        default = f"{table}_hnsw_{int(m)}_{int(ef_construction)}"
    else:
        raise ValueError(f"index method must be 'ivfflat' or 'hnsw', got {method!r}")
    if storage == "vector":
        column = "embedding vector_cosine_ops"
    elif storage == "halfvec":
        if dim is None or dim < 1:
            raise ValueError(f"a halfvec index needs the dimension, got dim={dim!r}")
        column = f"(embedding::halfvec({int(dim)})) halfvec_cosine_ops"
        default += "_halfvec"
    else:
        raise ValueError(f"storage must be 'vector' or 'halfvec', got {storage!r}")
    name = check_ident(name or default)
    if maintenance_work_mem is not None and not _MEMORY.match(maintenance_work_mem):
        raise ValueError(f"maintenance_work_mem must look like '512MB' or '2GB': {maintenance_work_mem!r}")
    sql = f"CREATE INDEX {name} ON {table} USING {method} ({column}) WITH ({with_})"
    async with db.acquire() as conn:
        started = time.perf_counter()
        if maintenance_work_mem is None:
            await conn.execute(sql)
        else:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
                await conn.execute(sql)
        return name, time.perf_counter() - started


async def drop_index(db: asyncpg.Pool, name: str) -> None:
    await db.execute(f"DROP INDEX IF EXISTS {check_ident(name)}")


async def reindex(db: asyncpg.Pool, name: str) -> None:
    """Rebuild an index from the rows now present (new ivfflat centres after a backfill)."""
    await db.execute(f"REINDEX INDEX {check_ident(name)}")


async def vector_indexes(db: asyncpg.Pool, table: str) -> list[str]:
    """Names of the ivfflat and hnsw indexes on ``table``."""
    rows = await db.fetch(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_am a ON a.oid = i.relam "
        "WHERE t.relname = $1 AND t.relnamespace = 'public'::regnamespace "
        "AND a.amname IN ('ivfflat', 'hnsw') ORDER BY 1",
        check_ident(table),
    )
    return [r["relname"] for r in rows]
