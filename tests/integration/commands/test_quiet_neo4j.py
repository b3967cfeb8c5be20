"""A query on a relationship type or label that does not exist yet logs nothing through our driver
factory (the notifications are turned off at the driver, so Neo4j does not even send them), while a
bare driver on the same server does log them: the test sees the notification when it is there."""

from __future__ import annotations

import logging

import pytest
from neo4j import AsyncGraphDatabase

from wavegraph.clients import neo4j_driver
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

MISSING = "MATCH (:WavegraphNoSuchLabel)-[e:WAVEGRAPH_NO_SUCH_REL]->() RETURN count(e) AS n"


def _notifications(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("neo4j.notifications")]


@pytest.mark.parametrize("retries", [False, True])
async def test_the_factory_driver_logs_no_notification_for_a_missing_type(
    services: Settings, caplog: pytest.LogCaptureFixture, retries: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="neo4j.notifications")
    driver = neo4j_driver(services.neo4j, retries=retries)
    try:
        records, summary, _ = await driver.execute_query(MISSING)
    finally:
        await driver.close()
    assert records[0]["n"] == 0
    assert _notifications(caplog) == []
    assert [s.gql_status for s in summary.gql_status_objects if s.is_notification] == []


async def test_a_bare_driver_on_the_same_server_does_log_it(
    services: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="neo4j.notifications")
    neo4j = services.neo4j
    driver = AsyncGraphDatabase.driver(neo4j.uri, auth=(neo4j.user, neo4j.password) if neo4j.auth else None)
    try:
        await driver.execute_query(MISSING)
    finally:
        await driver.close()
    logged = _notifications(caplog)
    assert any("relationship type does not exist" in m and "WAVEGRAPH_NO_SUCH_REL" in m for m in logged), (
        logged
    )
