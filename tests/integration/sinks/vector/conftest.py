"""Fixtures for the vector tests: an open pgvector store on the shared ``embeddings`` table, unique
tenants cleaned up afterwards, and private tables (dropped afterwards) for recall and FAISS tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from wavegraph.settings import Settings
from wavegraph.sinks import pgvector_ddl as ddl
from wavegraph.sinks.pgvector import PgVectorStore


@pytest.fixture(scope="session")
def migrated(services: Settings) -> Settings:
    """The shared PostgreSQL with the ``embeddings`` table (applying pending migrations if it is missing)."""
    import asyncio

    async def has_table() -> bool:
        conn = await asyncpg.connect(services.postgres.url)
        try:
            return bool(await conn.fetchval("SELECT to_regclass('public.embeddings') IS NOT NULL"))
        finally:
            await conn.close()

    if not asyncio.run(has_table()):
        from wavegraph.migrations.api import apply_all

        apply_all(services)
    return services


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(migrated: Settings, tenant: str) -> AsyncIterator[PgVectorStore]:
    async with PgVectorStore(migrated) as s:
        yield s
        await s.pool.execute("DELETE FROM embeddings WHERE tenant LIKE $1", f"{tenant}%")


@pytest.fixture
async def table_store(migrated: Settings) -> AsyncIterator[PgVectorStore]:
    """A store on a private table of the same shape, without a vector index."""
    table = f"test_vec_{uuid.uuid4().hex[:10]}"
    async with PgVectorStore(migrated, table=table) as s:
        await ddl.create_table(s.pool, table, migrated.vector.dim)
        try:
            yield s
        finally:
            await ddl.drop_table(s.pool, table)
