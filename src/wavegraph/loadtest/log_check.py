"""After a scenario: is every acknowledged event in the topic itself, byte for byte?

The topic is read from the beginning to its end offsets by a consumer outside any group, after the
fault, from whichever replicas now lead. Each record is led back to its event by its event id and must
carry exactly the key and value the producer sent (:meth:`EdgeWorkload.value`). ``lost``: acknowledged
events with no record; ``mismatched``: a record whose key or value differs from its event's;
``unexpected``: a record no offered event explains; ``copies``: records beyond the first for one event
(a batch resent after an unacknowledged attempt: at-least-once, absorbed by the sinks). ``after``
counts the acknowledged events whose first record was created at or after a given time (the kill),
overall and per partition: the producers' work after the fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition

from wavegraph.clients import make_consumer
from wavegraph.loadtest.workload import EdgeWorkload
from wavegraph.settings import KafkaSettings

Expected = Callable[[int], tuple[bytes | None, bytes]]  # sequence number -> (key, value)


@dataclass(frozen=True)
class LogCheck:
    expected: int
    found: int
    lost: int
    mismatched: int
    unexpected: int
    copies: int
    records: int
    after: int = 0
    after_by_partition: dict[int, int] = field(default_factory=dict)
    examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.lost == self.mismatched == self.unexpected == 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["examples"] = list(self.examples)
        out["after_by_partition"] = {str(p): n for p, n in sorted(self.after_by_partition.items())}
        return out


async def check_log(
    kafka: KafkaSettings,
    topic: str,
    partitions: int,
    workload: EdgeWorkload,
    expected: Expected,
    accepted: Iterable[int],
    *,
    after_ms: int | None = None,
) -> LogCheck:
    """Read ``topic`` whole and compare it with the events ``accepted`` (``expected(i)`` is what event
    ``i`` was sent as); count those first created at or after ``after_ms`` (epoch milliseconds)."""
    want = set(accepted)
    first_ts: dict[int, tuple[int, int]] = {}  # seq -> (timestamp ms, partition) of its first record
    copies: Counter[int] = Counter()
    mismatched = unexpected = records = 0
    examples: list[str] = []
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = make_consumer(kafka)
    await consumer.start()
    try:
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        remaining = {tp for tp in parts if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, batch in batches.items():
                for record in batch:
                    records += 1
                    seq = _seq(workload, record.value)
                    if seq is None or seq not in want:
                        unexpected += 1
                        _example(examples, f"unexpected record at {tp.partition}:{record.offset}")
                        continue
                    if (record.key, record.value) != expected(seq):
                        mismatched += 1
                        _example(examples, f"event {seq}: record at {tp.partition}:{record.offset} differs")
                    if seq in first_ts:
                        copies[seq] += 1
                    else:
                        first_ts[seq] = (record.timestamp, tp.partition)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    lost = want - set(first_ts)
    for seq in sorted(lost)[:3]:
        _example(examples, f"lost event {seq} ({workload.event_id(seq)})")
    after: Counter[int] = Counter()
    if after_ms is not None:
        after.update(part for ts, part in first_ts.values() if ts >= after_ms)
    return LogCheck(
        expected=len(want),
        found=len(first_ts),
        lost=len(lost),
        mismatched=mismatched,
        unexpected=unexpected,
        copies=sum(copies.values()),
        records=records,
        after=sum(after.values()),
        after_by_partition=dict(after),
        examples=tuple(examples),
    )


def _seq(workload: EdgeWorkload, value: bytes | None) -> int | None:
    try:
        return workload.index_of(str(orjson.loads(value or b"")["event_id"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _example(examples: list[str], text: str, limit: int = 5) -> None:
    if len(examples) < limit:
        examples.append(text)
