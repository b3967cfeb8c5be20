"""``wavegraph bench runtime``: the stream runtime's consume throughput next to a bare getmany loop.

Both read the same pre-filled topic in the same run, each as a fresh consumer group: the bare loop
only counts records; the runtime decodes and validates every edge event, writes it to a counting
sink, flushes and commits per batch. ``ratio`` = runtime events/s ÷ bare events/s (goal ≥ 0.7).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from rich.progress import Progress

from wavegraph.events import EdgeEvent, decode_edge
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings
from wavegraph.streams.processor import StreamProcessor
from wavegraph.streams.publish import publish_values
from wavegraph.streams.sink import Item, Rejection
from wavegraph.streams.topics import delete_topics, ensure_topics


class CountingSink:
    """Counts what it receives; durable by definition."""

    def __init__(self) -> None:
        self.count = 0

    async def write(self, batch: list[Item[EdgeEvent]]) -> None:
        self.count += len(batch)

    async def flush(self) -> list[Rejection[EdgeEvent]]:
        return []


def sample_edges(n: int, tenant: str = "bench", seed: int = 0) -> list[bytes]:
    import random

    rng = random.Random(seed)
    return [
        orjson.dumps(
            {
                "tenant": tenant,
                "src": f"n{rng.randrange(n // 10 + 1)}",
                "dst": f"n{rng.randrange(n // 10 + 1)}",
                "rel": "LINKS",
                "weight": round(rng.random(), 4),
                "ts": 1.7e9 + i,
            }
        )
        for i in range(n)
    ]


async def _bare(settings: Settings, topic: str, total: int) -> float:
    # The same consumer configuration as the runtime's, so only the per-batch work differs.
    probe: StreamProcessor[EdgeEvent] = StreamProcessor(
        settings,
        "bench-bare",
        [topic],
        lambda r: decode_edge(r.value, 0),
        [],
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
    )
    consumer = probe._make_consumer()
    consumer.subscribe([topic])
    await consumer.start()
    try:
        seen = 0
        started = None
        while seen < total:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.runtime.max_batch)
            n = sum(len(v) for v in batches.values())
            if n and started is None:
                started = time.perf_counter()
            seen += n
        assert started is not None
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _runtime(settings: Settings, topic: str, total: int) -> float:
    sink = CountingSink()
    max_bytes = settings.runtime.max_event_bytes
    proc: StreamProcessor[EdgeEvent] = StreamProcessor(
        settings,
        "bench-runtime",
        [topic],
        lambda r: decode_edge(r.value, max_bytes),
        [sink],
        group_id=f"bench-runtime-{uuid.uuid4().hex[:8]}",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    started = None
    while sink.count < total:
        if sink.count and started is None:
            started = time.perf_counter() - 0.0
        await asyncio.sleep(0.005)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - (started or time.perf_counter())
    stop.set()
    await task
    return total / max(elapsed, 1e-9)


async def _run(settings: Settings, n: int, repeats: int) -> list[dict[str, Any]]:
    topic = f"bench.runtime.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, [topic], partitions=settings.kafka.partitions)
    try:
        with Progress() as progress:
            task = progress.add_task("producing edge events", total=n)
            await publish_values(settings.kafka, topic, sample_edges(n), lambda k: progress.advance(task, k))
            rows: list[dict[str, Any]] = []
            measure = progress.add_task("consuming (bare, runtime)", total=2 * repeats)
            for rep in range(repeats):
                bare = await _bare(settings, topic, n)
                progress.advance(measure)
                rt = await _runtime(settings, topic, n)
                progress.advance(measure)
                rows.append({"case": "bare_getmany", "repeat": rep, "events": n, "events_per_s": round(bare)})
                rows.append({"case": "runtime", "repeat": rep, "events": n, "events_per_s": round(rt)})
        return rows
    finally:
        await delete_topics(settings.kafka, [topic])


def run_runtime_bench(settings: Settings, quick: bool = False, out: Path | None = None) -> dict[str, Any]:
    n = 50_000 if quick else 300_000
    repeats = 2 if quick else 3
    rows = asyncio.run(_run(settings, n, repeats))
    best = {
        case: max(r["events_per_s"] for r in rows if r["case"] == case)
        for case in ("bare_getmany", "runtime")
    }
    ratio = round(best["runtime"] / best["bare_getmany"], 3)
    report = build_report("runtime", {"events": n, "repeats": repeats, "quick": quick}, rows, ratio)
    write_report(report, out)
    return report
