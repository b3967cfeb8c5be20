"""Offering edges straight to Kafka at a target rate (open loop), the Kafka half of the burst.

Like the HTTP client: batch ``k`` is due at ``start + k * batch_size / rate``; its latency runs from the
due time to the broker's acknowledgement of its last record (acks=all, idempotent producer). An event
counts as accepted once the broker acknowledged it; with ``retry`` a batch whose send failed is sent
again (after ``RETRY_S``) until acknowledged, so a broker restart costs time, not events.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from wavegraph.clients import make_producer
from wavegraph.loadtest.http_client import nearest_rank
from wavegraph.settings import KafkaSettings

RETRY_S = 1.0
Record = tuple[bytes | None, bytes]  # key, value
HeadedRecord = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # key, value, headers


@dataclass
class KafkaLoadStats:
    offered_events: int = 0
    accepted_events: int = 0
    failed_events: int = 0
    retries: int = 0
    latencies_s: list[float] = field(default_factory=list)
    service_s: list[float] = field(default_factory=list)
    max_start_lag_s: float = 0.0
    accepted: list[int] = field(default_factory=list)  # sequence numbers the broker acknowledged
    elapsed_s: float = 0.0

    def percentile(self, q: float, service: bool = False) -> float:
        """As :meth:`LoadStats.percentile`: from the due time, or with ``service`` from the first send."""
        return nearest_rank(self.service_s if service else self.latencies_s, q)

    def summary(self) -> dict[str, Any]:
        def ms(seconds: float) -> float | None:
            return None if math.isnan(seconds) else round(seconds * 1000, 2)

        return {
            "offered_events": self.offered_events,
            "accepted_events": self.accepted_events,
            "rejected_events": 0,
            "failed_events": self.failed_events,
            "rejected_ratio": 0.0,
            "retries": self.retries,
            "p50_ms": ms(self.percentile(50)),
            "p99_ms": ms(self.percentile(99)),
            "service_p50_ms": ms(self.percentile(50, service=True)),
            "service_p99_ms": ms(self.percentile(99, service=True)),
            "max_start_lag_ms": ms(self.max_start_lag_s),
            "elapsed_s": round(self.elapsed_s, 3),
            "accepted_per_s": round(self.accepted_events / self.elapsed_s, 1) if self.elapsed_s else 0.0,
        }


async def produce_at_rate(
    kafka: KafkaSettings,
    topic: str,
    make_record: Callable[[int], Record],
    *,
    rate: float,
    seconds: float,
    first: int = 0,
    batch_size: int = 100,
    retry: bool = True,
    max_in_flight: int = 64,
    stop: asyncio.Event | None = None,
) -> KafkaLoadStats:
    """Offer records ``first, first + 1, …`` to ``topic`` at ``rate``/s for ``seconds``."""
    stats = KafkaLoadStats()
    total = max(1, round(rate * seconds))
    interval = batch_size / rate
    slots = asyncio.Semaphore(max_in_flight)
    producer = make_producer(kafka, linger_ms=5, client_id="wavegraph-loadtest")
    await producer.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with asyncio.TaskGroup() as tasks:
            for k, lo in enumerate(range(first, first + total, batch_size)):
                due = start + k * interval
                await asyncio.sleep(max(0.0, due - loop.time()))
                if stop is not None and stop.is_set():
                    break
                seqs = list(range(lo, min(lo + batch_size, first + total)))
                stats.offered_events += len(seqs)
                await slots.acquire()
                stats.max_start_lag_s = max(stats.max_start_lag_s, loop.time() - due)
                tasks.create_task(_send(producer, topic, make_record, seqs, due, retry, stats, slots))
    finally:
        await producer.stop()
    stats.elapsed_s = loop.time() - start
    return stats


async def _send(
    producer: AIOKafkaProducer,
    topic: str,
    make_record: Callable[[int], Record],
    seqs: list[int],
    due: float,
    retry: bool,
    stats: KafkaLoadStats,
    slots: asyncio.Semaphore,
) -> None:
    loop = asyncio.get_running_loop()
    pending = seqs
    sent = loop.time()
    try:
        while pending:
            done, failed = await _attempt(producer, topic, make_record, pending)
            stats.accepted.extend(done)
            stats.accepted_events += len(done)
            if failed and not retry:
                stats.failed_events += len(failed)
                break
            if failed:
                stats.retries += 1
                await asyncio.sleep(RETRY_S)
            pending = failed
    finally:
        stats.latencies_s.append(loop.time() - due)
        stats.service_s.append(loop.time() - sent)
        slots.release()


async def _attempt(
    producer: AIOKafkaProducer, topic: str, make_record: Callable[[int], Record], seqs: list[int]
) -> tuple[list[int], list[int]]:
    """Send ``seqs`` once; return (acknowledged, failed) sequence numbers."""
    futures: list[asyncio.Future[Any]] = []
    try:
        for seq in seqs:
            key, value = make_record(seq)
            futures.append(await producer.send(topic, value=value, key=key))
    except KafkaError:
        pass  # the records not handed over count as failed; those handed over are awaited below
    results = await asyncio.gather(*futures, return_exceptions=True)
    done = [seq for seq, res in zip(seqs, results, strict=False) if not isinstance(res, BaseException)]
    acked = set(done)
    return done, [seq for seq in seqs if seq not in acked]


async def publish_records(kafka: KafkaSettings, topic: str, records: list[HeadedRecord]) -> int:
    """Send (key, value, headers) records and wait for every acknowledgement; return the count."""
    producer = make_producer(kafka, linger_ms=10, client_id="wavegraph-loadtest")
    await producer.start()
    try:
        futures = []
        for key, value, headers in records:
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        return len(records)
    finally:
        await producer.stop()
