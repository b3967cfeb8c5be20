"""``wavegraph run edges`` as a command: a subprocess on the real Kafka and Neo4j, stopped by SIGTERM.

What the command adds to the pipeline (tested elsewhere): it serves ``/metrics`` on its
port, installs the signal handlers, and on SIGTERM flushes, commits and exits 0 printing its counters.
"""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from wavegraph.clients import neo4j_driver
from wavegraph.devservices.process import free_port
from wavegraph.events import parse_dlq_headers
from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

EDGES = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d"), ("d", "e")]


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := await check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.3)
    return result


def samples(text: str, name: str) -> dict[str, float]:
    """``name``'s samples in a Prometheus exposition, by their ``processor`` label."""
    return {
        s.labels.get("processor", ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_run_edges_writes_dead_letters_serves_metrics_and_stops_cleanly_on_sigterm(
    services: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    tenant, node, prefix = "acme", f"cli-{run}-", f"test-cli-{run}"  # a configured tenant, own node ids
    topic, dlq = f"test.cli.edges.{run}", f"test.cli.dlq.{run}"
    port = free_port()
    env = {
        **os.environ,
        "COLUMNS": "400",  # the counters on one line
        "WAVEGRAPH_KAFKA__TOPICS__EDGES": topic,
        "WAVEGRAPH_KAFKA__TOPICS__DLQ": dlq,
        "WAVEGRAPH_RUNTIME__GROUP_PREFIX": prefix,
        "WAVEGRAPH_METRICS__EDGES_PORT": str(port),
    }
    values = [orjson.dumps({"tenant": tenant, "src": node + s, "dst": node + d, "ts": 1.0}) for s, d in EDGES]
    malformed = b'{"tenant": "' + tenant.encode() + b'", "src": "a"'
    driver = neo4j_driver(services.neo4j)
    log = tmp_path / "run-edges.log"
    await ensure_topics(services.kafka, [topic, dlq], partitions=1)
    try:
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wavegraph.cli", "run", "edges",
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
        try:
            await publish_values(services.kafka, topic, [*values[:3], malformed, *values[3:]])

            async def written() -> bool:
                records, _, _ = await driver.execute_query(
                    "MATCH (a:Node {tenant: $t})-[e]->(b) WHERE a.id STARTS WITH $n "
                    "RETURN a.id AS s, b.id AS d",
                    t=tenant,
                    n=node,
                )
                found = sorted((r["s"].removeprefix(node), r["d"].removeprefix(node)) for r in records)
                return found == sorted(EDGES)

            try:
                await until(written, "the five edges in Neo4j")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the command's log:\n{log.read_text()[-3000:]}") from None

            async def scraped() -> str | None:
                try:
                    async with httpx.AsyncClient() as client:
                        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    return None
                sunk = samples(text, "wavegraph_events_sunk_total").get("edges", 0)
                return text if sunk >= len(EDGES) else None

            text = await until(scraped, "the processor's /metrics counting the edges")
            assert samples(text, "wavegraph_events_sunk_total")["edges"] == len(EDGES)
            assert samples(text, "wavegraph_dlq_events_total")["edges"] == 1
            proc.send_signal(signal.SIGTERM)
            stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stderr = log.read_text()
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        (line,) = [x for x in stdout.decode().splitlines() if x.startswith("stopped: ")]
        stats = ast.literal_eval(line.removeprefix("stopped: "))
        assert stats["neo4j_written"] == len(EDGES), stats

        # the dead letter keeps the original bytes, and the commit covers every record
        consumer = AIOKafkaConsumer(bootstrap_servers=services.kafka.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(dlq, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            batch = await consumer.getmany(tp, timeout_ms=10_000)
        finally:
            await consumer.stop()
        (dead,) = batch[tp]
        assert dead.value == malformed
        meta = parse_dlq_headers(dead.headers)
        assert (meta["topic"], meta["offset"], meta["processor"]) == (topic, "3", "edges"), meta
        admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(f"{prefix}.edges")
        finally:
            await admin.close()
        assert {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic} == {0: 6}
    finally:
        await driver.execute_query(
            "MATCH (n:Node {tenant: $t}) WHERE n.id STARTS WITH $n DETACH DELETE n", t=tenant, n=node
        )
        await driver.close()
        await delete_topics(services.kafka, [topic, dlq])
