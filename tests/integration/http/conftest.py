"""Fixtures of the HTTP tests; this folder is on ``sys.path`` so tests can share ``test_ingest``'s helpers."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from wavegraph.settings import Settings
from wavegraph.streams.topics import delete_topics, ensure_topics

sys.path.insert(0, str(Path(__file__).parent))

PARTITIONS = 2


@pytest.fixture
async def topic(services: Settings) -> AsyncIterator[str]:
    name = f"test.http.edges.{uuid.uuid4().hex[:10]}"
    await ensure_topics(services.kafka, [name], partitions=PARTITIONS)
    yield name
    await delete_topics(services.kafka, [name])


@pytest.fixture
async def redis_client(services: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(services.redis.url)
    yield client
    await client.aclose()
