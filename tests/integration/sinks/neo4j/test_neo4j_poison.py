"""Data errors are not outages: poison rows, breaker states, arrival order and fatal answers, against
the real Neo4j."""

from __future__ import annotations

import pytest
from aiobreaker import CircuitBreakerState
from neo4j import AsyncDriver

from wavegraph.errors import SinkFatalError
from wavegraph.events import EdgeEvent
from wavegraph.settings import Settings
from wavegraph.sinks.neo4j import Neo4jEdgeSink
from wavegraph.streams.sink import Item

from .test_neo4j_sink import graph, unchecked

pytestmark = pytest.mark.services


def items(events: list[EdgeEvent], partition: int = 0) -> list[Item[EdgeEvent]]:
    return [Item(ev, "edges", partition, i, b"{}") for i, ev in enumerate(events)]


async def test_one_poison_row_among_500_neither_opens_the_breaker_nor_stops_the_flush(
    services: Settings, driver: AsyncDriver, tenant: str
) -> None:
    """The issue's scenario: before the fix, bisecting around the row counted ~2·log2(500) breaker
    failures, opened the breaker and raised out of ``flush`` after writing part of the batch."""
    sink = Neo4jEdgeSink(driver, services.ingest.model_copy(update={"breaker_fail_max": 2}))
    good = [EdgeEvent(tenant=tenant, src=f"s{i}", dst=f"d{i}", ts=1.0) for i in range(500)]
    bad = unchecked(tenant=tenant, src="x", dst="y", ts=1.0, props={"n": 10**20})
    await sink.write(items([*good[:250], bad, *good[250:]]))
    rejected = await sink.flush()
    assert [r.item.value for r in rejected] == [bad]
    assert rejected[0].code == "sink_refused"
    assert sink.breaker.current_state == CircuitBreakerState.CLOSED
    assert sink.breaker.fail_counter == 0
    assert len(await graph(driver, tenant)) == 500


async def test_a_poison_row_in_the_half_open_trial_closes_the_breaker(
    services: Settings, driver: AsyncDriver, tenant: str
) -> None:
    sink = Neo4jEdgeSink(driver, services.ingest)
    sink.breaker.half_open()  # as after an outage's timeout: the next call is the trial
    bad = unchecked(tenant=tenant, src="x", dst="y", ts=1.0, props={"n": -(2**64)})
    good = EdgeEvent(tenant=tenant, src="a", dst="b", ts=1.0)
    await sink.write(items([bad, good]))
    rejected = await sink.flush()
    assert [r.item.value for r in rejected] == [bad]
    assert sink.breaker.current_state == CircuitBreakerState.CLOSED
    assert [g[:3] for g in await graph(driver, tenant)] == [("a", "LINKS", "b")]


async def test_when_the_newest_event_of_an_edge_is_refused_the_next_newest_is_written(
    services: Settings, driver: AsyncDriver, tenant: str
) -> None:
    sink = Neo4jEdgeSink(driver, services.ingest)
    older = EdgeEvent(tenant=tenant, src="a", dst="b", ts=1.0, weight=2.0)
    middle = EdgeEvent(tenant=tenant, src="a", dst="b", ts=2.0, weight=3.0)
    newest = unchecked(tenant=tenant, src="a", dst="b", ts=3.0, weight=4.0, props={"n": 2**64})
    await sink.write(items([older, newest, middle]))
    rejected = await sink.flush()
    assert [r.item.value for r in rejected] == [newest]
    assert await graph(driver, tenant) == [("a", "LINKS", "b", 3.0)]


@pytest.mark.parametrize("same_chunk", [True, False])
async def test_a_delete_keeps_a_tombstone_that_an_older_upsert_cannot_undo(
    services: Settings, driver: AsyncDriver, tenant: str, same_chunk: bool
) -> None:
    """Delete-then-older-upsert, in one chunk and in two flushes (as from two partitions)."""
    sink = Neo4jEdgeSink(driver, services.ingest)
    first = EdgeEvent(tenant=tenant, src="a", dst="b", ts=1.0)
    delete = EdgeEvent(tenant=tenant, src="a", dst="b", ts=5.0, op="delete")
    late_older = EdgeEvent(tenant=tenant, src="a", dst="b", ts=3.0, weight=7.0)
    batches = [[first, delete, late_older]] if same_chunk else [[first], [delete], [late_older]]
    for i, batch in enumerate(batches):
        await sink.write(items(batch, partition=i))
        assert await sink.flush() == []
    assert await graph(driver, tenant) == []
    newer = EdgeEvent(tenant=tenant, src="a", dst="b", ts=6.0, weight=9.0)
    await sink.write(items([newer]))
    assert await sink.flush() == []
    assert await graph(driver, tenant) == [("a", "LINKS", "b", 9.0)]


async def test_the_outcome_does_not_depend_on_arrival_order(
    services: Settings, driver: AsyncDriver, tenant: str
) -> None:
    """Every order of four events of one edge (ties included) leaves the same edge."""
    import itertools

    events = [
        EdgeEvent(tenant=tenant, src="a", dst="b", ts=2.0, weight=1.0, event_id="e1"),
        EdgeEvent(tenant=tenant, src="a", dst="b", ts=2.0, weight=2.0, event_id="e2"),  # tie: larger id
        EdgeEvent(tenant=tenant, src="a", dst="b", ts=1.0, op="delete"),  # older: loses
        EdgeEvent(tenant=tenant, src="a", dst="b", ts=0.5, weight=3.0),
    ]
    outcomes = set()
    for n, order in enumerate(itertools.permutations(events)):
        if n % 3:  # 8 of the 24 orders keep the test short; each is a fresh tenant
            continue
        t = f"{tenant}o{n}"
        sink = Neo4jEdgeSink(driver, services.ingest)
        for i, ev in enumerate(order):  # one event per flush: the stored state decides
            await sink.write(items([ev.model_copy(update={"tenant": t})], partition=i))
            assert await sink.flush() == []
        outcomes.add(tuple(await graph(driver, t)))
        await driver.execute_query(
            "MATCH (n) WHERE (n:Node OR n:EdgeTombstone) AND n.tenant = $t DETACH DELETE n", t=t
        )
    assert outcomes == {(("a", "LINKS", "b", 2.0),)}


async def test_a_missing_database_is_fatal_not_an_outage(services: Settings, driver: AsyncDriver) -> None:
    sink = Neo4jEdgeSink(driver, services.ingest, database="nosuchdb")
    await sink.write(items([EdgeEvent(tenant="acme", src="a", dst="b", ts=1.0)]))
    with pytest.raises(SinkFatalError, match="DatabaseNotFound"):
        await sink.flush()
    assert sink.breaker.fail_counter == 0
