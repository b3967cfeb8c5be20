"""Dead letters through the running processors, against the real Kafka, Neo4j and Redis: the issue's
poison event, a row Neo4j refuses, a DLQ that cannot be written yet, one too large for it, and
redelivery after backpressure."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from neo4j import AsyncDriver
from recording import RecordingSink

from wavegraph import metrics
from wavegraph.clients import neo4j_driver
from wavegraph.events import EdgeEvent, decode_edge, parse_dlq_headers
from wavegraph.processors.edges.pipeline import run_edges
from wavegraph.settings import Settings
from wavegraph.sinks import breaker_state
from wavegraph.streams.processor import StreamProcessor
from wavegraph.streams.publish import edge_key
from wavegraph.streams.sink import Item, Rejection
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services


def with_topics(settings: Settings, **topics: str) -> Settings:
    names = settings.kafka.topics.model_copy(update=topics)
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topics": names})})


@pytest.fixture
async def names(services: Settings) -> AsyncIterator[dict[str, str]]:
    run = uuid.uuid4().hex[:10]
    made = {"edges": f"test.dl.edges.{run}", "dlq": f"test.dl.dlq.{run}"}
    await ensure_topics(services.kafka, list(made.values()), partitions=2)
    yield made
    await delete_topics(services.kafka, list(made.values()))


@pytest.fixture
async def driver(services: Settings) -> AsyncIterator[AsyncDriver]:
    drv = neo4j_driver(services.neo4j)
    yield drv
    await drv.close()


async def send(settings: Settings, topic: str, values: list[bytes], headers: bool = True) -> None:
    """Keyed as ``produce edges`` keys them, with a producer header every dead letter must keep."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                value=v,
                key=edge_key(v) or b"unkeyed",
                headers=[("trace", f"t{i}".encode())] if headers else [],
            )
            for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.kafka.max_message_bytes,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(recs)
        for recs in (await consumer.getmany(timeout_ms=300)).values():  # nothing beyond what we expect
            out.extend(recs)
    finally:
        await consumer.stop()
    return out


async def wait_for(cond: Callable[[], Any], task: asyncio.Task[Any], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():
        if task.done():
            task.result()
            raise AssertionError("the processor stopped")
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


def edge(prefix: str, i: int, **extra: Any) -> bytes:
    """An edge record as a producer writes it (stdlib json: it writes integers of any size)."""
    return json.dumps(
        {"tenant": "acme", "src": f"{prefix}s{i}", "dst": f"{prefix}d{i}", "ts": 1.0, **extra}
    ).encode()


async def count_edges(driver: AsyncDriver, prefix: str) -> int:
    rows, _, _ = await driver.execute_query(
        "MATCH (a:Node {tenant: 'acme'})-[e]->() WHERE a.id STARTS WITH $p RETURN count(e)", p=prefix
    )
    return int(rows[0][0])


async def test_the_issues_poison_event_among_500_reaches_the_dlq_and_ingestion_goes_on(
    services: Settings, names: dict[str, str], driver: AsyncDriver
) -> None:
    """One integer beyond 64 bits among 500 good edges: before the fix, ``run edges`` died after 250
    edges, restarts died on the same batch, and the breaker published OPEN for every tenant."""
    settings = with_topics(services, **names)
    prefix = f"p{uuid.uuid4().hex[:8]}"
    good = [edge(prefix, i) for i in range(500)]
    poison = edge(prefix, 999, props={"n": 10**20})
    values = [*good[:250], poison, *good[250:]]
    await send(settings, names["edges"], values)
    stop = asyncio.Event()
    task = asyncio.create_task(run_edges(settings, stop))
    redis = aioredis.Redis.from_url(settings.redis.url)
    try:

        async def all_written() -> bool:
            return await count_edges(driver, prefix) == 500

        await wait_for(all_written, task)
        (letter,) = await read_all(settings, names["dlq"], 1)
        assert not task.done(), "the processor keeps running"
        snapshot = await breaker_state.read(redis)
        assert snapshot.state == breaker_state.CLOSED
    finally:
        stop.set()
        stats = await asyncio.wait_for(task, 30)
        await redis.aclose()
        await driver.execute_query(
            "MATCH (n:Node {tenant: 'acme'}) WHERE n.id STARTS WITH $p DETACH DELETE n", p=prefix
        )
    assert letter.value == poison and letter.key == edge_key(poison)
    assert ("trace", b"t250") in letter.headers, "the original headers, byte for byte"
    meta = parse_dlq_headers(letter.headers)
    assert meta["code"] == "invalid_event"
    assert meta["reason"].startswith("props.n: integer outside the signed 64-bit range")
    assert (meta["topic"], meta["offset"].isdigit()) == (names["edges"], True)
    assert stats["dead_letters"] == 1 and stats["neo4j_written"] == 500


async def test_a_row_neo4j_refuses_reaches_the_dlq_with_neo4js_reason(
    services: Settings, names: dict[str, str], driver: AsyncDriver
) -> None:
    """A row that passes validation but breaks a real constraint (relationship uniqueness)."""
    settings = with_topics(services, **names)
    rel = f"UNIQ_{uuid.uuid4().hex[:8]}"
    constraint = f"c_{rel.lower()}"
    await driver.execute_query(f"CREATE CONSTRAINT {constraint} FOR ()-[r:{rel}]-() REQUIRE r.code IS UNIQUE")
    prefix = f"p{uuid.uuid4().hex[:8]}"
    values = [edge(prefix, i, rel=rel, props={"code": "same"}) for i in range(2)]
    values += [edge(prefix, 10 + i) for i in range(20)]
    await send(settings, names["edges"], values)
    stop = asyncio.Event()
    task = asyncio.create_task(run_edges(settings, stop))
    try:
        letters = await read_all(settings, names["dlq"], 1)

        async def rest_written() -> bool:
            return await count_edges(driver, prefix) == 21

        await wait_for(rest_written, task)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await driver.execute_query(f"DROP CONSTRAINT {constraint} IF EXISTS")
        await driver.execute_query(
            "MATCH (n:Node {tenant: 'acme'}) WHERE n.id STARTS WITH $p DETACH DELETE n", p=prefix
        )
    assert len(letters) == 1
    meta = parse_dlq_headers(letters[0].headers)
    assert meta["code"] == "sink_refused"
    assert "ConstraintValidationFailed" in meta["reason"]
    assert letters[0].value in values and letters[0].key == edge_key(letters[0].value)


def processor(settings: Settings, topic: str, sinks: list[Any]) -> StreamProcessor[EdgeEvent]:
    limit = settings.runtime.max_event_bytes
    return StreamProcessor(
        settings, "dltest", [topic], lambda r: decode_edge(r.value, limit), sinks, group_id=uuid.uuid4().hex
    )


async def test_a_dlq_that_cannot_be_written_is_retried_and_nothing_is_committed_meanwhile(
    services: Settings,
) -> None:
    """The DLQ topic does not exist at first (the broker does not auto-create topics): the processor
    retries with backoff, stays up, commits nothing; once the topic exists the letter lands."""
    run = uuid.uuid4().hex[:10]
    src, dlq = f"test.dl.src.{run}", f"test.dl.late.{run}"
    await ensure_topics(services.kafka, [src], partitions=1)
    base = with_topics(services, dlq=dlq)
    runtime = base.runtime.model_copy(
        update={"dlq_send_timeout_s": 1.0, "dlq_retry_backoff_s": 0.2, "dlq_retry_max_s": 0.5}
    )
    settings = base.model_copy(update={"runtime": runtime})
    await send(settings, src, [edge("x", i) for i in range(10)] + [b"{not json"])
    sink = RecordingSink()
    proc = processor(settings, src, [sink])
    retries = (
        metrics.REGISTRY.get_sample_value("wavegraph_dlq_send_retries_total", {"processor": "dltest"}) or 0
    )
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:

        async def retried_twice() -> bool:
            now = metrics.REGISTRY.get_sample_value(
                "wavegraph_dlq_send_retries_total", {"processor": "dltest"}
            )
            return (now or 0) >= retries + 2

        await wait_for(retried_twice, task, timeout_s=30)
        assert proc.committed == {} and not task.done()
        await ensure_topics(settings.kafka, [dlq], partitions=1)

        async def committed() -> bool:
            return sum(proc.committed.values()) == 11

        await wait_for(committed, task, timeout_s=60)
        (letter,) = await read_all(settings, dlq, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await delete_topics(settings.kafka, [src, dlq])
    assert letter.value == b"{not json"
    assert parse_dlq_headers(letter.headers)["code"] == "bad_json"


async def test_a_dead_letter_too_large_for_the_dlq_topic_keeps_its_coordinates(services: Settings) -> None:
    """The DLQ topic takes 64 KiB records; the refused record is 200 kB (oversized for the processor)."""
    run = uuid.uuid4().hex[:10]
    src, dlq = f"test.dl.src.{run}", f"test.dl.small.{run}"
    await ensure_topics(services.kafka, [src], partitions=1)
    await ensure_topics(services.kafka.model_copy(update={"max_message_bytes": 65_536}), [dlq], partitions=1)
    runtime = services.runtime.model_copy(update={"max_event_bytes": 100_000})
    settings = with_topics(services, dlq=dlq).model_copy(update={"runtime": runtime})
    big = edge("x", 0, props={"blob": "z" * 200_000})
    await send(settings, src, [big, edge("x", 1)])
    sink = RecordingSink()
    proc = processor(settings, src, [sink])
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:

        async def committed() -> bool:
            return sum(proc.committed.values()) == 2

        await wait_for(committed, task)
        (letter,) = await read_all(settings, dlq, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await delete_topics(settings.kafka, [src, dlq])
    meta = parse_dlq_headers(letter.headers)
    assert letter.value == b"" and letter.key == edge_key(big)
    assert meta["truncated"] == str(len(big)) and meta["code"] == "oversized"
    assert meta["offset"] == "0" and meta["topic"] == src


class RejectingSink:
    """Refuses every event whose ``src`` ends in ``!`` (a data error, for good)."""

    def __init__(self) -> None:
        self.pending: list[Item[EdgeEvent]] = []

    async def write(self, batch: list[Item[EdgeEvent]]) -> None:
        self.pending.extend(batch)

    async def flush(self) -> list[Rejection[EdgeEvent]]:
        bad = [
            Rejection(it, "src: test refuses a bang", "sink_refused")
            for it in self.pending
            if it.value.src.endswith("!")
        ]
        self.pending.clear()
        return bad


async def test_a_record_rejected_again_after_backpressure_reaches_the_dlq_once(services: Settings) -> None:
    run = uuid.uuid4().hex[:10]
    src, dlq = f"test.dl.src.{run}", f"test.dl.once.{run}"
    await ensure_topics(services.kafka, [src, dlq], partitions=1)
    settings = with_topics(services, dlq=dlq)
    await send(
        settings, src, [edge("x", 0), orjson.dumps({"tenant": "acme", "src": "b!", "dst": "c", "ts": 1.0})]
    )
    later = RecordingSink(backpressure_times=2, retry_after=0.1)  # the batch is redelivered twice
    proc = processor(settings, src, [RejectingSink(), later])
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:

        async def committed() -> bool:
            return sum(proc.committed.values()) == 2

        await wait_for(committed, task)
        letters = await read_all(settings, dlq, 1, timeout_s=5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await delete_topics(settings.kafka, [src, dlq])
    assert len(later.rejected_batches) == 2
    assert [parse_dlq_headers(r.headers)["reason"] for r in letters] == ["src: test refuses a bang"]
