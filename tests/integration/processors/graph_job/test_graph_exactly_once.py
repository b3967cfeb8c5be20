"""NodeEvents exactly once: a graph job SIGKILLed mid-stream, again and again (real processes, Kafka).

A ``wavegraph run graph`` process (instance 0: a stable transactional id, so each restart fences the
transaction the killed one left open) consumes Les Misérables in 12 chunks while it is SIGKILLed three
times, each a random moment after a chunk, and restarted at once. A ``read_committed`` consumer of the
nodes topic then

- sees no event repeat the value its key already shows (within 1e-9: an event that tells nothing new,
  what a restart that republished every node, or an aborted send made visible, would produce);
- ends with every node's PageRank equal to networkx's on the whole graph (L1 ≤ 1e-6): nothing lost;
- finds transaction markers on the topic (offsets the records do not use): the events went out in
  transactions with the offsets.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path

import networkx as nx
import pytest
from aiokafka import TopicPartition
from graph_kafka import PARTITIONS, edge_values, les_miserables, pagerank_l1, read_new

from wavegraph.events import NodeEvent
from wavegraph.loadtest.workers import WorkerProcess
from wavegraph.settings import Settings
from wavegraph.streams.publish import edge_key, publish_values

pytestmark = pytest.mark.services

CHUNKS = 12
KILL_AFTER = (3, 6, 9)
REPEAT = 1e-9


async def test_sigkilled_graph_jobs_publish_each_node_event_once(
    job_settings: Settings, prefix: str, tmp_path: Path
) -> None:
    s = job_settings.model_copy(
        update={
            "runtime": job_settings.runtime.model_copy(update={"instance": 0, "fetch_timeout_ms": 100}),
            "graph": job_settings.graph.model_copy(update={"recompute_fraction": 1.0}),
        }
    )
    rng = random.Random(7)
    graph = les_miserables(prefix)
    full = nx.DiGraph(graph)
    values = edge_values(graph, "upsert", ts=1.0)
    rng.shuffle(values)
    chunks = [values[i::CHUNKS] for i in range(CHUNKS)]
    worker = WorkerProcess(s, tmp_path / "graph.log", "graph")
    await worker.start()
    kills = 0
    try:
        for i, chunk in enumerate(chunks):
            await publish_values(s.kafka, s.kafka.topics.edges, chunk, key=edge_key)
            await asyncio.sleep(0.6)
            if i in KILL_AFTER:
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                worker.check()
                await worker.kill()
                kills += 1
                await worker.start()
        positions = {TopicPartition(s.kafka.topics.nodes, p): 0 for p in range(PARTITIONS)}
        history: dict[str, list[float]] = {}
        deadline = time.monotonic() + 90
        while True:
            for rec in await read_new(s.kafka, positions):
                ev = NodeEvent.model_validate_json(rec.value)
                history.setdefault(ev.node, []).append(ev.pagerank)
            latest = {node: seq[-1] for node, seq in history.items()}
            if pagerank_l1(latest, full) <= 1e-6:
                break
            worker.check()
            assert time.monotonic() < deadline, (
                f"not settled: L1 {pagerank_l1(latest, full)}\n{worker.tail()}"
            )
            await asyncio.sleep(0.5)
    finally:
        await worker.stop()
    assert kills == len(KILL_AFTER)
    repeats = [
        (node, a, b)
        for node, seq in history.items()
        for a, b in itertools.pairwise(seq)
        if abs(a - b) <= REPEAT
    ]
    assert not repeats, f"{len(repeats)} events repeated their key's value, e.g. {repeats[:3]}"
    records = sum(len(seq) for seq in history.values())
    assert sum(positions.values()) > records  # commit markers take offsets: transactions were used
