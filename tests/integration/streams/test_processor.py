"""The consume→sink→commit loop against a real Kafka broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from recording import RecordingSink

from wavegraph.events import EdgeEvent, decode_edge, parse_dlq_headers
from wavegraph.metrics import REGISTRY
from wavegraph.settings import Settings
from wavegraph.streams.processor import StreamProcessor
from wavegraph.streams.publish import publish_values
from wavegraph.streams.sink import Item
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services

WORKER = Path(__file__).with_name("worker.py")


def edge_values(n: int, tenant: str = "acme") -> list[bytes]:
    return [
        orjson.dumps(
            {"tenant": tenant, "src": f"n{i % 97}", "dst": f"n{(i * 7) % 101}", "weight": 1.0, "ts": float(i)}
        )
        for i in range(n)
    ]


def expected_ids(values: list[bytes]) -> set[str]:
    return {EdgeEvent.model_validate_json(v).event_id for v in values}


@pytest.fixture
async def topic(services: Settings) -> AsyncIterator[str]:
    name = f"test.edges.{uuid.uuid4().hex[:10]}"
    await ensure_topics(services.kafka, [name], partitions=3)
    yield name
    await delete_topics(services.kafka, [name])


def processor(
    settings: Settings, topic: str, sink: RecordingSink, group: str | None = None
) -> StreamProcessor[EdgeEvent]:
    limit = settings.runtime.max_event_bytes
    return StreamProcessor(
        settings,
        "test",
        [topic],
        lambda r: decode_edge(r.value, limit),
        [sink],
        group_id=group or f"test-{uuid.uuid4().hex[:8]}",
    )


async def run_until(proc: StreamProcessor[EdgeEvent], done: object, timeout: float = 60.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not done():  # type: ignore[operator]
            if task.done():
                task.result()
                raise AssertionError("processor stopped early")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; stats={proc.stats}")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def committed_offsets(settings: Settings, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


async def test_sigkill_mid_stream_loses_nothing_and_commits_never_lead_flushes(
    services: Settings, topic: str, tmp_path: Path
) -> None:
    values = edge_values(10_000)
    await publish_values(services.kafka, topic, values)
    record = tmp_path / "record.txt"
    group = f"kill-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def flushed() -> list[tuple[int, int, str]]:
        if not record.exists():
            return []
        return [(int(p), int(o), e) for p, o, e in (ln.split() for ln in record.read_text().splitlines())]

    worker = subprocess.Popen([sys.executable, str(WORKER), topic, group, str(record)], env=env)
    try:
        deadline = time.monotonic() + 90
        while len(flushed()) < 2_000:
            assert worker.poll() is None, "worker died on its own"
            assert time.monotonic() < deadline, "worker made no progress"
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    rows = flushed()
    assert len(rows) < len(values), "the kill came too late to be mid-stream"
    max_flushed: dict[int, int] = {}
    for p, o, _ in rows:
        max_flushed[p] = max(max_flushed.get(p, -1), o)
    for partition, offset in (await committed_offsets(services, group)).items():
        assert offset <= max_flushed.get(partition, -1) + 1, (
            f"partition {partition}: commit ran ahead of the sink"
        )

    worker = subprocess.Popen([sys.executable, str(WORKER), topic, group, str(record)], env=env)
    try:
        deadline = time.monotonic() + 120
        want = expected_ids(values)
        while not want <= {e for _, _, e in flushed()}:
            assert worker.poll() is None, "restarted worker died"
            assert time.monotonic() < deadline, "restarted worker did not catch up"
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    offsets = await committed_offsets(services, group)
    per_partition: dict[int, int] = {}
    for p, _, _ in {(p, o, e) for p, o, e in flushed()}:
        per_partition[p] = per_partition.get(p, 0) + 1
    assert offsets == per_partition, "after the restart every offset is committed exactly to the end"


async def test_backpressure_pauses_then_resumes_without_loss_or_skip(services: Settings, topic: str) -> None:
    values = edge_values(3_000)
    await publish_values(services.kafka, topic, values)
    sink = RecordingSink(backpressure_times=3, retry_after=0.3)
    proc = processor(services, topic, sink)
    await run_until(proc, lambda: len({e for _, _, e in sink.flushed}) >= len(values))
    assert proc.stats["pauses"] == 3
    assert {e for _, _, e in sink.flushed} == expected_ids(values)
    by_partition: dict[int, list[int]] = {}
    for p, o, _ in sink.flushed:
        by_partition.setdefault(p, []).append(o)
    for p, offsets in by_partition.items():
        assert sorted(set(offsets)) == list(range(max(offsets) + 1)), f"partition {p} skipped offsets"
    # after each refusal the same partition resumed from the refused batch's first offset
    accepted_firsts = {(p, o) for batch in sink.accepted_batches for p, o in batch}
    for p, first in sink.rejected_batches:
        assert (p, first) in accepted_firsts


async def test_malformed_events_go_to_the_dlq_with_reasons(services: Settings, topic: str) -> None:
    dlq = f"test.dlq.{uuid.uuid4().hex[:10]}"
    settings = services.model_copy(
        update={
            "kafka": services.kafka.model_copy(
                update={"topics": services.kafka.topics.model_copy(update={"dlq": dlq})}
            )
        }
    )
    await ensure_topics(settings.kafka, [dlq], partitions=1)
    good = edge_values(9_900)
    bad: list[bytes] = []
    for i in range(100):
        kind = i % 4
        if kind == 0:
            bad.append(b'{"tenant": "acme", "src": "a", ')
        elif kind == 1:
            bad.append(orjson.dumps({"tenant": "acme", "src": f"x{i}", "ts": 1.0}))
        elif kind == 2:
            bad.append(orjson.dumps({"tenant": "acme", "src": f"x{i}", "dst": "y", "ts": "yesterday"}))
        else:
            bad.append(
                orjson.dumps({"tenant": "acme", "src": "a" * (2 * 1024 * 1024), "dst": "b", "ts": 1.0})
            )
    mixed = good[:]
    for i, b in enumerate(bad):
        mixed.insert(i * 99, b)
    try:
        await publish_values(settings.kafka, topic, mixed)
        sink = RecordingSink()
        proc = processor(settings, topic, sink)
        await run_until(proc, lambda: proc.stats["consumed"] >= len(mixed))
        assert {e for _, _, e in sink.flushed} == expected_ids(good)
        consumer = AIOKafkaConsumer(
            dlq,
            bootstrap_servers=settings.kafka.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=settings.kafka.max_message_bytes,
        )
        await consumer.start()
        letters = []
        try:
            deadline = time.monotonic() + 30
            while len(letters) < len(bad) and time.monotonic() < deadline:
                for recs in (await consumer.getmany(timeout_ms=500)).values():
                    letters.extend(recs)
        finally:
            await consumer.stop()
        assert sorted(r.value for r in letters) == sorted(bad), "every malformed value, byte for byte"
        reasons = [parse_dlq_headers(r.headers) for r in letters]
        assert all(h["topic"] == topic and h["offset"].isdigit() and h["reason"] for h in reasons)
        joined = " | ".join(h["reason"] for h in reasons)
        for needle in ("bad JSON", "dst: Field required", "ts: Input should be a valid number", "oversized"):
            assert needle in joined
    finally:
        await delete_topics(settings.kafka, [dlq])


async def test_shutdown_leaves_no_task_behind(services: Settings, topic: str) -> None:
    await publish_values(services.kafka, topic, edge_values(500))
    sink = RecordingSink()
    proc = processor(services, topic, sink)
    await run_until(proc, lambda: len(sink.flushed) >= 500)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_commits_exactly_what_was_flushed(services: Settings, topic: str) -> None:
    values = edge_values(1_000)
    await publish_values(services.kafka, topic, values)
    sink = RecordingSink()
    group = f"commit-{uuid.uuid4().hex[:8]}"
    proc = processor(services, topic, sink, group)
    await run_until(proc, lambda: len(sink.flushed) >= len(values))
    offsets = await committed_offsets(services, group)
    counts: dict[int, int] = {}
    for p, _, _ in sink.flushed:
        counts[p] = counts.get(p, 0) + 1
    assert offsets == counts
    assert {TopicPartition(topic, p) for p in counts} == set(proc.committed)


async def test_cancellation_mid_stream_leaves_no_commit_task_behind(services: Settings, topic: str) -> None:
    """Cancelled (not stopped) while commits are pipelined: the commit in flight is still awaited."""
    await publish_values(services.kafka, topic, edge_values(5_000))
    sink = RecordingSink()
    proc = processor(services, topic, sink)
    proc.max_batch = 100  # many batches, so a commit is in flight when the cancel lands
    task = asyncio.create_task(proc.run(asyncio.Event()))
    while proc.stats["commits"] < 3:
        assert not task.done()
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert proc._commit_task is None


class LagSampler(RecordingSink):
    """Records ``wavegraph_consumer_lag`` as the processor left it before each batch."""

    def __init__(self, topic: str) -> None:
        super().__init__()
        self.topic = topic
        self.samples: list[float | None] = []

    def lag(self) -> float | None:
        return REGISTRY.get_sample_value("wavegraph_consumer_lag", {"processor": "lag", "topic": self.topic})

    async def write(self, batch: list[Item[EdgeEvent]]) -> None:
        self.samples.append(self.lag())
        await super().write(batch)


async def test_consumer_lag_is_published_and_drains_to_zero(services: Settings, topic: str) -> None:
    values = edge_values(900)
    await publish_values(services.kafka, topic, values)
    sink = LagSampler(topic)
    limit = services.runtime.max_event_bytes
    proc = StreamProcessor(
        services,
        "lag",
        [topic],
        lambda r: decode_edge(r.value, limit),
        [sink],
        max_batch=40,
        group_id=f"lag-{uuid.uuid4().hex[:8]}",
    )
    await run_until(proc, lambda: len(sink.flushed) >= len(values))
    seen = [s for s in sink.samples if s is not None]
    assert seen and max(seen) > 0  # batches of 40 out of ~300 a partition: records were waiting
    assert sink.lag() == 0
