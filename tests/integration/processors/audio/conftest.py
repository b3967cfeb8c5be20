"""Fixtures for the transcription processor against the real Kafka and PostgreSQL.

The transcript tables live in a database of their own (``wavegraph_test_audio``), recreated and migrated
once per session, so the shared database and its migration history stay untouched.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scratch_db import migrated_database

sys.path.insert(0, str(Path(__file__).parent))

from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.settings import Settings

DATABASE = "wavegraph_test_audio"


@pytest.fixture(scope="session")
def audio_db(services: Settings) -> Iterator[Settings]:
    """``services`` pointing at a freshly migrated ``wavegraph_test_audio`` database."""
    yield asyncio.run(migrated_database(services, DATABASE))


@pytest.fixture(scope="session")
def embedder() -> TextEmbedder:
    return TextEmbedder()
