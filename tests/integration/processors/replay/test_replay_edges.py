"""``wavegraph replay`` on the real Kafka and Neo4j: the edges topic rebuilds a wiped tenant's graph
to the same content checksum, touches no other tenant, and an ephemeral rebuild finds a live graph
that drifted from its log."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from neo4j import AsyncDriver

from wavegraph.clients import neo4j_driver
from wavegraph.commands.replay import replay
from wavegraph.loadtest.lag import LagProbe
from wavegraph.processors.edges.pipeline import run_edges
from wavegraph.processors.replay.checksum import graph_checksum
from wavegraph.settings import Settings
from wavegraph.streams.publish import edge_key
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services

PARTITIONS = 3


@pytest.fixture
async def scoped(services: Settings) -> AsyncIterator[Settings]:
    """Own topics, consumer group and two tenants of its own (they own API keys)."""
    run = uuid.uuid4().hex[:10]
    topics = services.kafka.topics.model_copy(
        update={"edges": f"test.replay.{run}.edges", "dlq": f"test.replay.{run}.dlq"}
    )
    keys = {**services.http.api_keys, f"k-a-{run}": f"rp-a-{run}", f"k-b-{run}": f"rp-b-{run}"}
    settings = services.model_copy(
        update={
            "kafka": services.kafka.model_copy(update={"topics": topics}),
            "runtime": services.runtime.model_copy(update={"group_prefix": f"test.replay.{run}"}),
            "http": services.http.model_copy(update={"api_keys": keys}),
        }
    )
    await ensure_topics(settings.kafka, [topics.edges, topics.dlq], partitions=PARTITIONS)
    yield settings
    await delete_topics(settings.kafka, [topics.edges, topics.dlq])
    driver = neo4j_driver(settings.neo4j)
    for tenant in (f"rp-a-{run}", f"rp-b-{run}"):
        await wipe(driver, tenant)
    await driver.close()


def tenants(settings: Settings) -> tuple[str, str]:
    run = settings.runtime.group_prefix.rsplit(".", 1)[-1]
    return f"rp-a-{run}", f"rp-b-{run}"


def ev(tenant: str, src: int, dst: int, ts: float, **extra: Any) -> bytes:
    body = {"tenant": tenant, "src": f"n{src}", "dst": f"n{dst}", "ts": ts, **extra}
    return json.dumps(body).encode()


def workload(a: str, b: str) -> list[bytes]:
    """Upserts with properties and two relationship types, newer updates, deletes, older upserts of
    deleted edges arriving after their delete, another tenant, and records the processor refuses."""
    out = [
        ev(a, i, (i * 7 + 1) % 120, 1000.0 + i, rel="FOLLOWS" if i % 3 else "LINKS", props={"k": i})
        for i in range(150)
    ]
    out += [
        ev(a, i, (i * 7 + 1) % 120, 2000.0 + i, rel="FOLLOWS" if i % 3 else "LINKS", weight=2.5)
        for i in range(0, 150, 4)
    ]
    out += [
        ev(a, i, (i * 7 + 1) % 120, 3000.0, rel="FOLLOWS" if i % 3 else "LINKS", op="delete")
        for i in range(1, 150, 10)
    ]
    out += [
        ev(a, i, (i * 7 + 1) % 120, 1500.0, rel="FOLLOWS" if i % 3 else "LINKS") for i in range(1, 150, 10)
    ]
    out += [ev(b, i, i + 1, 1000.0 + i) for i in range(60)]
    out += [b"{not json", json.dumps({"tenant": a}).encode(), ev("nobody-owns-this", 1, 2, 1.0)]
    return out


async def send(settings: Settings, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(settings.kafka.topics.edges, v, key=edge_key(v) or b"x") for v in values
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def ingest(settings: Settings, values: list[bytes]) -> None:
    """Through the real edge processor, until its group has committed every record."""
    await send(settings, values)
    stop = asyncio.Event()
    task = asyncio.create_task(run_edges(settings, stop))
    group = f"{settings.runtime.group_prefix}.edges"
    try:
        async with LagProbe(settings.kafka, group, settings.kafka.topics.edges, PARTITIONS) as probe:
            await probe.wait_drained(timeout_s=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wipe(driver: AsyncDriver, tenant: str) -> None:
    await driver.execute_query("MATCH (n:Node {tenant: $t}) DETACH DELETE n", t=tenant)
    await driver.execute_query("MATCH (t:EdgeTombstone {tenant: $t}) DELETE t", t=tenant)


async def test_a_wiped_tenant_comes_back_equal_and_no_other_tenant_is_touched(scoped: Settings) -> None:
    a, b = tenants(scoped)
    await ingest(scoped, workload(a, b))
    driver = neo4j_driver(scoped.neo4j)
    try:
        before_a, before_b = await graph_checksum(driver, a), await graph_checksum(driver, b)
        assert before_a.counts["edges"] == 150 - 15 and before_a.counts["tombstones"] == 15
        await wipe(driver, a)
        wiped = await graph_checksum(driver, a)
        result = await replay(scoped, tenant=a, into="live")
        after_a, after_b = await graph_checksum(driver, a), await graph_checksum(driver, b)
        again = await replay(scoped, tenant=a, into="live")
    finally:
        await driver.close()
    assert wiped.counts == {"nodes": 0, "edges": 0, "tombstones": 0}
    assert after_a == before_a, "the log rebuilds the tenant's graph exactly"
    assert after_b == before_b, "the other tenant is not touched"
    [row] = result["tenants"]
    assert row["tenant"] == a and row["before"]["digest"] == wiped.digest
    assert row["after"]["digest"] == before_a.digest and row["equal"] is False
    assert (result["skipped_invalid"], result["other_tenants"]) == (3, 60)
    assert result["records"] == len(workload(a, b)) and result["refused"] == 0
    assert again["equal"] is True and again["tenants"][0]["after"]["digest"] == before_a.digest


async def test_an_ephemeral_rebuild_finds_the_tenant_that_drifted_from_its_log(scoped: Settings) -> None:
    a, b = tenants(scoped)
    await ingest(scoped, workload(a, b))
    driver = neo4j_driver(scoped.neo4j)
    try:  # an edge written behind the log's back: the live graph no longer matches it
        await driver.execute_query(
            "MATCH (x:Node {tenant: $t, id: 'n0'}), (y:Node {tenant: $t, id: 'n2'}) MERGE (x)-[:LINKS]->(y)",
            t=a,
        )
    finally:
        await driver.close()
    result = await replay(scoped, tenant=None, into="ephemeral")
    by = {row["tenant"]: row for row in result["tenants"]}
    assert set(by) == {a, b}
    assert by[b]["equal"] is True
    assert by[a]["equal"] is False
    assert by[a]["live"]["counts"]["edges"] == by[a]["replayed"]["counts"]["edges"] + 1
    assert result["equal"] is False


async def test_the_edges_topic_is_kept_forever_and_the_nodes_topic_is_compacted(services: Settings) -> None:
    """What replay and the graph job's rebuild rely on, read back from the broker's topic configs."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    run = uuid.uuid4().hex[:10]
    topics = services.kafka.topics.model_copy(
        update={n: f"test.retention.{run}.{n}" for n in ("edges", "nodes", "transcripts")}
    )
    kafka = services.kafka.model_copy(update={"topics": topics})
    names = [topics.edges, topics.nodes, topics.transcripts]
    await ensure_topics(kafka, names, partitions=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        values = {res[3]: {e[0]: e[1] for e in res[4]} for c in configs for res in c.resources}
    finally:
        await admin.close()
        await delete_topics(kafka, names)
    assert values[topics.edges]["retention.ms"] == "-1"
    assert values[topics.nodes]["cleanup.policy"] == "compact"
    assert values[topics.transcripts]["retention.ms"] == "-1", "replay --target postgres reads it all"
    assert values[topics.transcripts]["cleanup.policy"] == "delete"


def test_the_command_replays_a_topic_and_prints_the_comparison(services: Settings) -> None:
    """``wavegraph replay --tenant acme [--json]`` as a command (settings from the environment)."""
    from typer.testing import CliRunner

    from wavegraph.cli import app

    run = uuid.uuid4().hex[:10]
    topic = f"test.replay.cli.{run}"
    node = f"rp-cli-{run}-"
    values = [ev("acme", 0, 1, 5.0), ev("acme", 1, 2, 5.0), ev("acme", 2, 0, 5.0)]
    values = [v.replace(b'"n', f'"{node}n'.encode()) for v in values]
    env = {"WAVEGRAPH_KAFKA__TOPICS__EDGES": topic}

    async def setup() -> None:
        await ensure_topics(services.kafka, [topic], partitions=1)
        topics = services.kafka.topics.model_copy(update={"edges": topic})
        await send(
            services.model_copy(update={"kafka": services.kafka.model_copy(update={"topics": topics})}),
            values,
        )

    async def cleanup() -> None:
        await delete_topics(services.kafka, [topic])
        driver = neo4j_driver(services.neo4j)
        await driver.execute_query(
            "MATCH (n:Node {tenant: 'acme'}) WHERE n.id STARTS WITH $n DETACH DELETE n", n=node
        )
        await driver.close()

    asyncio.run(setup())
    try:
        as_json = CliRunner().invoke(app, ["replay", "--tenant", "acme", "--json"], env=env)
        table = CliRunner().invoke(app, ["replay", "--tenant", "acme"], env={**env, "COLUMNS": "200"})
    finally:
        asyncio.run(cleanup())
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.output)
    assert (result["records"], result["written"], result["skipped_invalid"]) == (3, 3, 0)
    [row] = result["tenants"]
    assert row["tenant"] == "acme" and row["after"]["counts"]["edges"] >= 3
    assert table.exit_code == 0, table.output
    assert f"replayed 3 records of {topic} into live neo4j: 3 written" in table.output
    assert "acme" in table.output and "yes" in table.output  # the second replay changed nothing
