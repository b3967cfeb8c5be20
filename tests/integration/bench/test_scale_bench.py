"""``wavegraph bench scale``, short version: 1 and 2 edge workers drain a topic of a real 3-broker
cluster (throwaway, RF 3) into the shared Neo4j; every edge lands once with its content, and the CPU
each part used is reported. The full run is ``wavegraph bench scale`` (1, 2, 3 workers, 100,000 edges)."""

from __future__ import annotations

import os

import pytest

from wavegraph.bench.scale import cpu_seconds, measure_scale, neo4j_pids_of
from wavegraph.devservices.kafka import with_brokers
from wavegraph.loadtest.scope import private_services
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


def test_cpu_seconds_counts_this_process_and_ignores_a_gone_one() -> None:
    before = cpu_seconds([os.getpid()])
    sum(i * i for i in range(2_000_000))  # burn some CPU
    assert cpu_seconds([os.getpid()]) > before
    assert cpu_seconds([2**22 + 12_345]) == 0.0  # above pid_max on Linux: no such process


async def test_two_workers_share_the_topic_and_lose_nothing(services: Settings) -> None:
    three = with_brokers(services, 3)
    three = three.model_copy(
        update={"kafka": three.kafka.model_copy(update={"heap": "256m", "partitions": 6})}
    )
    pids = neo4j_pids_of(services)
    async with private_services(three, "kafka", "redis") as env:
        assert env.kafka.port != services.kafka.port  # never the shared broker
        report = await measure_scale(env, (1, 2), 4_000, True, pids)
    rows = {row["workers"]: row for row in report["rows"]}
    assert set(rows) == {1, 2}
    for row in rows.values():
        assert (row["lost"], row["duplicates"], row["mismatched"]) == (0, 0, 0)
        assert row["edges_per_s"] > 0 and row["cpu_workers"] > 0 and row["cpu_brokers"] > 0
    assert report["params"]["partitions"] == 6 and report["params"]["replication_factor"] == 3
    assert report["ratio"] == pytest.approx(rows[2]["edges_per_s"] / rows[1]["edges_per_s"], rel=1e-2)
