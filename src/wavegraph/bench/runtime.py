"""``wavegraph bench runtime``: the stream runtime's consume throughput next to a bare loop and its peers.

All cases read the same pre-filled topic of edge events in the same run, each as a fresh consumer group
named under ``bench.runtime.``, interleaved repeat by repeat:

- ``bare_getmany``: an aiokafka ``getmany`` loop that only counts records (the floor of any aiokafka
  consumer; the same consumer settings as the runtime's);
- ``runtime``: wavegraph's :class:`~wavegraph.streams.processor.StreamProcessor` with the edge
  processor's decoder (every rule of :class:`~wavegraph.events.EdgeEvent`, the tenant check), a
  counting sink, flush, dead letters and commit after flush;
- with ``--peers``: ``quixstreams`` (its JSON deserialiser, counting, its own checkpointing) and
  ``faust`` (its orjson codec, counting), each in a subprocess (:mod:`wavegraph.bench.runtime_peers`);
  a peer that is not installed or cannot run here is a row with a ``skipped`` note.

Each case is timed from its first batch (or event) to its last; the events of that first batch are not
counted. ``events_per_s`` is wall-clock; ``cpu_us_per_event`` is the process CPU time over the same
span (all threads) per event, which a loaded machine disturbs less. ``ratio`` = best runtime events/s ÷
best bare events/s (goal ≥ 0.5); ``ratio_vs_quixstreams`` = best runtime ÷ best Quix Streams (goal ≥ 3).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from rich.progress import Progress

from wavegraph.bench import runtime_peers
from wavegraph.events import EdgeEvent, EdgeLike, decode_edge
from wavegraph.processors.edges.decoder import EdgeDecoder
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings
from wavegraph.streams.processor import StreamProcessor
from wavegraph.streams.publish import publish_values
from wavegraph.streams.sink import Item, Rejection
from wavegraph.streams.topics import delete_topics, ensure_topics

PREFIX = "bench.runtime"
TENANT = "bench"
PEER_TIMEOUT_S = 600.0


class _Span:
    """Wall and CPU time from the first batch to the one that completes ``total`` events."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = 0
        self.first = 0
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0

    def add(self, n: int) -> None:
        if n and not self.seen:
            self.t0, self.c0, self.first = time.perf_counter(), time.process_time(), n
        self.seen += n
        if self.seen >= self.total and not self.t1:
            self.t1, self.c1 = time.perf_counter(), time.process_time()

    @property
    def done(self) -> bool:
        return self.t1 > 0

    def row(self) -> dict[str, Any]:
        events = self.seen - self.first
        seconds = self.t1 - self.t0
        return {
            "events": events,
            "seconds": round(seconds, 4),
            "events_per_s": round(events / max(seconds, 1e-9)),
            "cpu_s": round(self.c1 - self.c0, 4),
        }


class CountingSink:
    """Counts what it receives; durable by definition. Times the run at each flush."""

    def __init__(self, span: _Span | None = None) -> None:
        self.count = 0
        self.span = span
        self._pending = 0

    async def write(self, batch: list[Item[EdgeLike]]) -> None:
        self.count += len(batch)
        self._pending += len(batch)

    async def flush(self) -> list[Rejection[EdgeLike]]:
        if self.span is not None:
            self.span.add(self._pending)
        self._pending = 0
        return []


def sample_edges(n: int, tenant: str = TENANT, seed: int = 0) -> list[bytes]:
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


async def _bare(settings: Settings, topic: str, total: int, group: str | None = None) -> dict[str, Any]:
    # The same consumer configuration as the runtime's, so only the per-batch work differs.
    probe: StreamProcessor[EdgeEvent] = StreamProcessor(
        settings,
        "bench-bare",
        [topic],
        lambda r: decode_edge(r.value, 0),
        [],
        group_id=group or f"{PREFIX}.bare-{uuid.uuid4().hex[:8]}",
    )
    consumer = probe._make_consumer()
    consumer.subscribe([topic])
    await consumer.start()
    span = _Span(total)
    try:
        while not span.done:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.runtime.max_batch)
            span.add(sum(len(v) for v in batches.values()))
        return span.row()
    finally:
        await consumer.stop()


async def _runtime(settings: Settings, topic: str, total: int, group: str | None = None) -> dict[str, Any]:
    span = _Span(total)
    sink = CountingSink(span)
    proc: StreamProcessor[EdgeLike] = StreamProcessor(
        settings,
        "bench-runtime",
        [topic],
        EdgeDecoder(settings.runtime.max_event_bytes, frozenset({TENANT})),
        [sink],
        group_id=group or f"{PREFIX}.runtime-{uuid.uuid4().hex[:8]}",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    try:
        while not span.done:
            await asyncio.sleep(0.05)
            if task.done():
                task.result()
                raise RuntimeError("the processor stopped before consuming the topic")
    finally:
        stop.set()
        await task
    return {**span.row(), "commits": proc.stats["commits"], "dead_letters": proc.stats["dead_letters"]}


async def _run(settings: Settings, n: int, repeats: int, peers: bool) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    topic = f"{PREFIX}.{tag}"
    groups: list[str] = []
    cases = ["bare_getmany", "runtime"] + (list(runtime_peers.PEERS) if peers else [])
    await ensure_topics(settings.kafka, [topic], partitions=settings.kafka.partitions)
    try:
        with Progress() as progress:
            task = progress.add_task("producing edge events", total=n)
            await publish_values(settings.kafka, topic, sample_edges(n), lambda k: progress.advance(task, k))
            rows: list[dict[str, Any]] = []
            measure = progress.add_task(f"consuming ({', '.join(cases)})", total=len(cases) * repeats)
            skipped: dict[str, str] = {}
            for rep in range(repeats):
                for case in cases:
                    group = f"{PREFIX}.{case}-{tag}-r{rep}"
                    groups.append(group)
                    row = await _case(settings, case, topic, n, group, skipped)
                    rows.append({"case": case, "repeat": rep, **row})
                    progress.advance(measure)
        return rows
    finally:
        await delete_topics(settings.kafka, [topic])
        await runtime_peers.cleanup(settings.kafka.bootstrap, groups)


async def _case(
    settings: Settings, case: str, topic: str, n: int, group: str, skipped: dict[str, str]
) -> dict[str, Any]:
    if case == "bare_getmany":
        row = await _bare(settings, topic, n, group)
    elif case == "runtime":
        row = await _runtime(settings, topic, n, group)
    elif case in skipped:  # a peer that could not run once is not retried
        return {"skipped": skipped[case]}
    else:
        row = await asyncio.to_thread(
            runtime_peers.run_peer, case, settings.kafka.bootstrap, topic, n, group, PEER_TIMEOUT_S
        )
        if "skipped" in row:
            skipped[case] = row["skipped"]
            return row
        row["version"] = runtime_peers.version(case)
    cpu = row.pop("cpu_s")
    row["cpu_us_per_event"] = round(cpu / max(row["events"], 1) * 1e6, 3)
    return row


def _best(rows: list[dict[str, Any]], case: str) -> int | None:
    rates = [r["events_per_s"] for r in rows if r["case"] == case and "events_per_s" in r]
    return max(rates) if rates else None


def _cpu(rows: list[dict[str, Any]], case: str) -> float | None:
    costs = [r["cpu_us_per_event"] for r in rows if r["case"] == case and "cpu_us_per_event" in r]
    return min(costs) if costs else None


def run_runtime_bench(
    settings: Settings,
    quick: bool = False,
    out: Path | None = None,
    peers: bool = False,
    events: int | None = None,
    repeats: int | None = None,
) -> dict[str, Any]:
    n = events or (50_000 if quick else 200_000)
    repeats = repeats or (2 if quick else 3)
    rows = asyncio.run(_run(settings, n, repeats, peers))
    runtime, bare, quix = _best(rows, "runtime"), _best(rows, "bare_getmany"), _best(rows, "quixstreams")
    ratio = round(runtime / bare, 3) if runtime and bare else None
    params = {
        "events": n,
        "repeats": repeats,
        "quick": quick,
        "peers": peers,
        "partitions": settings.kafka.partitions,
    }
    report = build_report("runtime", params, rows, ratio)
    report["ratio_vs_quixstreams"] = round(runtime / quix, 3) if runtime and quix else None
    cpu_rt, cpu_bare = _cpu(rows, "runtime"), _cpu(rows, "bare_getmany")
    # The same ratio from CPU time per event (bare ÷ runtime): what the wall ratio would be on an idle
    # machine where both get a whole core.
    report["cpu_ratio"] = round(cpu_bare / cpu_rt, 3) if cpu_rt and cpu_bare else None
    report["skipped"] = {r["case"]: r["skipped"] for r in rows if "skipped" in r}
    write_report(report, out)
    return report
