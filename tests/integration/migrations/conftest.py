"""A throwaway Neo4j + PostgreSQL for the destructive migration tests (the shared ones stay untouched),
wiped before each test that asks for it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from wavegraph.clients import neo4j_driver
from wavegraph.migrations.scratch import scratch as throwaway
from wavegraph.settings import Settings


@pytest.fixture(scope="session")
def scratch(settings: Settings) -> Iterator[Settings]:
    with asyncio.Runner() as runner:
        cm = throwaway(settings, "neo4j", "postgres")
        local = runner.run(cm.__aenter__())
        try:
            yield local
        finally:
            runner.run(cm.__aexit__(None, None, None))


@pytest.fixture
def neo4j_scratch(scratch: Settings) -> Settings:
    asyncio.run(_wipe_neo4j(scratch))
    return scratch


@pytest.fixture
def pg_scratch(scratch: Settings) -> Settings:
    asyncio.run(_wipe_postgres(scratch))
    return scratch


@pytest.fixture
def cli_env(scratch: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point the CLI's ``load_settings()`` at the scratch instances."""
    monkeypatch.setenv("WAVEGRAPH_NEO4J__BOLT_PORT", str(scratch.neo4j.bolt_port))
    monkeypatch.setenv("WAVEGRAPH_POSTGRES__PORT", str(scratch.postgres.port))
    return scratch


async def _wipe_neo4j(s: Settings) -> None:
    driver = neo4j_driver(s.neo4j, retries=True)
    try:
        async with driver.session() as session:  # CALL ... IN TRANSACTIONS needs an auto-commit transaction
            result = await session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
            await result.consume()
        records, _, _ = await driver.execute_query("SHOW CONSTRAINTS YIELD name")
        for r in records:
            await driver.execute_query(f"DROP CONSTRAINT `{r['name']}`")
        records, _, _ = await driver.execute_query("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP'")
        for r in records:
            await driver.execute_query(f"DROP INDEX `{r['name']}`")
    finally:
        await driver.close()


async def _wipe_postgres(s: Settings) -> None:
    conn = await asyncpg.connect(s.postgres.url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public; CREATE EXTENSION vector")
    finally:
        await conn.close()
