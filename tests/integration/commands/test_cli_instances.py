"""``wavegraph run edges --instances 2`` as a command on the real Kafka and Neo4j: two processes join
one consumer group and share its partitions; when one is SIGKILLed the other takes its partitions
over and every edge still lands; SIGTERM stops the rest and the parent reports the dead instance."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from wavegraph.clients import neo4j_driver
from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := await check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.3)
    return result


async def members(settings: Settings, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (described,) = response.to_object()["groups"]
    return len(described["members"]) if described["state"] == "Stable" else 0


async def test_two_instances_share_a_group_and_survive_the_loss_of_one(
    services: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    topic, dlq, prefix, node = (
        f"test.inst.edges.{run}",
        f"test.inst.dlq.{run}",
        f"test-inst-{run}",
        f"inst-{run}-",
    )
    env = {
        **os.environ,
        "WAVEGRAPH_KAFKA__TOPICS__EDGES": topic,
        "WAVEGRAPH_KAFKA__TOPICS__DLQ": dlq,
        "WAVEGRAPH_RUNTIME__GROUP_PREFIX": prefix,
        "WAVEGRAPH_METRICS__EDGES_PORT": "0",
    }

    def edges(first: int, count: int) -> list[bytes]:
        return [
            orjson.dumps({"tenant": "acme", "src": f"{node}{i}", "dst": f"{node}{i + 1}", "ts": 1.0})
            for i in range(first, first + count)
        ]

    driver = neo4j_driver(services.neo4j)

    async def in_neo4j() -> int:
        records, _, _ = await driver.execute_query(
            "MATCH (a:Node {tenant: 'acme'})-[e]->() WHERE a.id STARTS WITH $n RETURN count(e) AS c", n=node
        )
        return int(records[0]["c"])

    await ensure_topics(services.kafka, [topic, dlq], partitions=4)
    log = tmp_path / "instances.log"
    try:
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wavegraph.cli", "run", "edges", "--instances", "2",
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        try:
            await until(lambda: _two(services, prefix), "two members in the group")
            await publish_values(services.kafka, topic, edges(0, 200))
            await until(lambda: _count_is(in_neo4j, 200), "200 edges in Neo4j")
            pids = [int(p) for p in re.findall(r"\d+", log.read_text().split("pids", 1)[1].splitlines()[0])]
            assert len(pids) == 2
            os.kill(pids[0], signal.SIGKILL)
            await publish_values(services.kafka, topic, edges(200, 200))
            await until(lambda: _count_is(in_neo4j, 400), "400 edges in Neo4j after one instance died")
            assert proc.returncode is None, "the parent keeps the other instance running"
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = log.read_text()
        assert proc.returncode != 0, text  # one instance died: the parent says so by its exit code
        assert f"pid {pids[0]}) exited with -9" in text
        assert "Traceback" not in text
        assert not Path(f"/proc/{pids[1]}").exists(), "SIGTERM reached the surviving instance"
    finally:
        await driver.execute_query(
            "MATCH (n:Node {tenant: 'acme'}) WHERE n.id STARTS WITH $n DETACH DELETE n", n=node
        )
        await driver.close()
        await delete_topics(services.kafka, [topic, dlq])


async def _two(settings: Settings, prefix: str) -> bool:
    return await members(settings, f"{prefix}.edges") == 2


async def _count_is(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() == n
