"""A freshly migrated PostgreSQL database of its own for a group of tests, on the shared server."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from wavegraph.migrations.api import apply
from wavegraph.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def with_database(settings: Settings, database: str) -> Settings:
    """``settings`` pointing at ``database`` on the same server (the DSN too, when one is set)."""
    pg = settings.postgres
    dsn = urlunsplit(urlsplit(pg.dsn)._replace(path=f"/{database}")) if pg.dsn else None
    return settings.model_copy(update={"postgres": pg.model_copy(update={"database": database, "dsn": dsn})})


async def migrated_database(settings: Settings, database: str) -> Settings:
    """Drop and create ``database``, apply the project's PostgreSQL migrations; its settings."""
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {database}")
    finally:
        await conn.close()
    migrated = with_database(settings, database)
    await apply(migrated, MIGRATIONS, dbs=["postgres"])
    return migrated
