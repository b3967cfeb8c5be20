"""Fixtures for the transcription processor against the real Kafka and PostgreSQL.

The transcript tables live in a database of their own (``wavegraph_test_audio``), recreated and migrated
once per session, so the shared database and its migration history stay untouched.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from audio_kafka import with_database

from wavegraph.migrations.api import apply
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.settings import Settings

DATABASE = "wavegraph_test_audio"
MIGRATIONS = Path(__file__).resolve().parents[4] / "migrations"


async def _recreate(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def audio_db(services: Settings) -> Iterator[Settings]:
    """``services`` pointing at a freshly migrated ``wavegraph_test_audio`` database."""
    asyncio.run(_recreate(services))
    migrated = with_database(services, DATABASE)
    asyncio.run(apply(migrated, MIGRATIONS, dbs=["postgres"]))
    yield migrated


@pytest.fixture(scope="session")
def embedder() -> TextEmbedder:
    return TextEmbedder()
