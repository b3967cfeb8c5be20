"""The Neo4j edge sink against a real Neo4j: idempotent MERGE, dead-lettered rows, the breaker."""

from __future__ import annotations

import asyncio
import socket

import pytest
from neo4j import AsyncDriver

from wavegraph import metrics
from wavegraph.clients import neo4j_driver
from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import Neo4jEdgeSink
from wavegraph.streams.sink import Item

pytestmark = pytest.mark.services


def unchecked(**fields: object) -> EdgeEvent:
    """An edge event built without validation: what the sink must survive if validation ever misses
    something Neo4j refuses (validation rejects these today, so this is the only way to make one)."""
    base: dict[str, object] = {"rel": "LINKS", "weight": 1.0, "op": "upsert", "given_id": "", "props": {}}
    return EdgeEvent.model_construct(**{**base, **fields})


def items(events: list[EdgeEvent]) -> list[Item[EdgeEvent]]:
    return [Item(ev, "edges", 0, i, b"{}") for i, ev in enumerate(events)]


async def graph(driver: AsyncDriver, tenant: str) -> list[tuple[str, str, str, float]]:
    records, _, _ = await driver.execute_query(
        "MATCH (a:Node {tenant: $t})-[e]->(b:Node {tenant: $t}) "
        "RETURN a.id AS s, type(e) AS r, b.id AS d, e.weight AS w ORDER BY s, r, d",
        t=tenant,
    )
    return [(r[0], r[1], r[2], r[3]) for r in records]


async def test_batches_merge_idempotently_and_newest_event_wins(
    services: Settings, driver: AsyncDriver, tenant: str
) -> None:
    sink = Neo4jEdgeSink(driver, services.ingest)
    events = [
        EdgeEvent(
            tenant=tenant, src=f"n{i % 50}", dst=f"n{(i * 3) % 47}", rel="KNOWS", weight=1.0, ts=float(i)
        )
        for i in range(1000)
    ]
    events.append(EdgeEvent(tenant=tenant, src="a", dst="b", rel="CALLS", weight=2.0, ts=10.0))
    events.append(
        EdgeEvent(tenant=tenant, src="a", dst="b", rel="CALLS", weight=9.0, ts=5.0)
    )  # older: ignored
    for _ in range(2):  # a replay leaves the same graph
        await sink.write(items(events))
        assert await sink.flush() == []
    rows = await graph(driver, tenant)
    expected = {(f"n{i % 50}", f"n{(i * 3) % 47}") for i in range(1000)}
    assert len(rows) == len(expected) + 1
    assert ("a", "CALLS", "b", 2.0) in rows
    nodes, _, _ = await driver.execute_query("MATCH (n:Node {tenant: $t}) RETURN count(n)", t=tenant)
    assert nodes[0][0] == len({e.src for e in events} | {e.dst for e in events})


async def test_delete_removes_the_edge(services: Settings, driver: AsyncDriver, tenant: str) -> None:
    sink = Neo4jEdgeSink(driver, services.ingest)
    up = EdgeEvent(tenant=tenant, src="a", dst="b", ts=1.0)
    await sink.write(items([up]))
    await sink.flush()
    assert await graph(driver, tenant) == [("a", "LINKS", "b", 1.0)]  # it was there before the delete
    await sink.write(items([EdgeEvent(tenant=tenant, src="a", dst="b", ts=2.0, op="delete")]))
    await sink.flush()
    assert await graph(driver, tenant) == []


async def test_a_row_neo4j_refuses_is_rejected_and_the_rest_written(
    services: Settings, driver: AsyncDriver, tenant: str
) -> None:
    sink = Neo4jEdgeSink(driver, services.ingest)
    good = [EdgeEvent(tenant=tenant, src=f"s{i}", dst=f"d{i}", ts=1.0) for i in range(20)]
    bad = unchecked(tenant=tenant, src="x", dst="y", ts=1.0, props={"big": 2**70})  # beyond Neo4j's int64
    await sink.write(items([*good[:7], bad, *good[7:]]))
    rejected = await sink.flush()
    assert [r.item.value for r in rejected] == [bad]
    assert "neo4j refused the row" in rejected[0].reason
    assert len(await graph(driver, tenant)) == 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_breaker_opens_on_an_unreachable_neo4j_then_half_opens_and_closes(
    services: Settings, driver: AsyncDriver, tenant: str
) -> None:
    """The outage is real: the sink's driver points at a port where nothing listens."""
    ingest = services.ingest.model_copy(
        update={"breaker_fail_max": 3, "breaker_timeout_s": 1.0, "retry_attempts": 1, "retry_backoff_s": 0.01}
    )
    dead = neo4j_driver(services.neo4j.model_copy(update={"bolt_port": _free_port()}))
    sink = Neo4jEdgeSink(dead, ingest)
    batch = items([EdgeEvent(tenant=tenant, src="a", dst="b", ts=1.0)])
    for _ in range(3):
        await sink.write(batch)
        with pytest.raises(SinkBackpressureError):
            await sink.flush()
    assert metrics.REGISTRY.get_sample_value("breaker_state") == 1
    with pytest.raises(SinkBackpressureError, match="breaker is open"):
        await sink.write(batch)  # while OPEN the sink pushes back before buffering
    await dead.close()
    sink.driver = driver  # Neo4j "recovers"
    await asyncio.sleep(1.1)
    await sink.write(batch)
    assert await sink.flush() == []  # the trial batch in HALF_OPEN succeeds
    assert sink.listener.transitions == [(0, 1), (1, 2), (2, 0)]
    assert metrics.REGISTRY.get_sample_value("breaker_state") == 0
    assert len(await graph(driver, tenant)) == 1


async def test_full_buffer_pushes_back(services: Settings, driver: AsyncDriver, tenant: str) -> None:
    sink = Neo4jEdgeSink(driver, services.ingest.model_copy(update={"buffer_capacity": 10}))
    await sink.write(items([EdgeEvent(tenant=tenant, src="a", dst=f"b{i}", ts=1.0) for i in range(8)]))
    assert metrics.REGISTRY.get_sample_value("ingest_queue_fill_ratio") == pytest.approx(0.8)
    with pytest.raises(SinkBackpressureError, match="buffer is full"):
        await sink.write(items([EdgeEvent(tenant=tenant, src="c", dst=f"d{i}", ts=1.0) for i in range(5)]))


async def test_outage_errors_are_retried_with_backoff_before_one_breaker_failure(
    services: Settings, tenant: str
) -> None:
    """A real outage (nothing listens on the port): each flush retries ``retry_attempts`` times, then
    counts one breaker failure; without the retries this counter would not move."""
    ingest = services.ingest.model_copy(update={"retry_attempts": 2, "retry_backoff_s": 0.01})
    dead = neo4j_driver(services.neo4j.model_copy(update={"bolt_port": _free_port()}))
    sink = Neo4jEdgeSink(dead, ingest)
    before = metrics.REGISTRY.get_sample_value("wavegraph_neo4j_retries_total") or 0.0
    try:
        await sink.write(items([EdgeEvent(tenant=tenant, src="a", dst="b", ts=1.0)]))
        with pytest.raises(SinkBackpressureError, match="neo4j unavailable"):
            await sink.flush()
    finally:
        await dead.close()
    after = metrics.REGISTRY.get_sample_value("wavegraph_neo4j_retries_total") or 0.0
    assert after - before == 2
    assert sink.breaker.fail_counter == 1
