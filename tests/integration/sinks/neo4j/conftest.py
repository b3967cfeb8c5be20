"""Fixtures of the Neo4j sink tests: a driver on the real Neo4j and a fresh tenant, deleted afterwards
(its nodes and tombstones)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from neo4j import AsyncDriver

from wavegraph.clients import neo4j_driver
from wavegraph.settings import Settings


@pytest.fixture
async def driver(services: Settings) -> AsyncIterator[AsyncDriver]:
    drv = neo4j_driver(services.neo4j)
    yield drv
    await drv.close()


@pytest.fixture
async def tenant(driver: AsyncDriver) -> AsyncIterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    await driver.execute_query(
        "MATCH (n) WHERE (n:Node OR n:EdgeTombstone) AND n.tenant = $t DETACH DELETE n", t=name
    )
