"""Who leads each partition of a topic, and waiting for the cluster to move or restore a leadership.

Read from the metadata of whichever live broker answers (an admin client bootstrapped on every broker
of the settings): after a broker dies, its connection fails once and the next request goes elsewhere,
so every function here retries Kafka errors until its deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError

from wavegraph.settings import KafkaSettings
from wavegraph.streams.topics import PartitionState, describe_partitions

__all__ = ["PartitionState", "describe", "wait_for"]

POLL_S = 0.1


async def describe(kafka: KafkaSettings, topic: str) -> dict[int, PartitionState]:
    """The state of every partition of ``topic``, by partition number (a short request timeout: the
    callers poll while a broker is down)."""
    return await describe_partitions(kafka, topic, request_timeout_ms=5_000)


async def wait_for(
    kafka: KafkaSettings,
    topic: str,
    done: Callable[[dict[int, PartitionState]], bool],
    timeout_s: float,
    what: str,
) -> dict[int, PartitionState]:
    """Poll :func:`describe` until ``done(states)``; return those states. ``TimeoutError`` naming
    ``what`` (and the last states seen) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: dict[int, PartitionState] | str = "no answer"
    while True:
        try:
            states = await describe(kafka, topic)
            if done(states):
                return states
            last = states
        except (KafkaError, OSError) as exc:  # a dead broker's connection; ask another one
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: {what} not seen within {timeout_s:.0f}s (last: {last})")
        await asyncio.sleep(POLL_S)


async def wait_for_led(
    kafka: KafkaSettings, topic: str, partitions: int, timeout_s: float = 30.0
) -> dict[int, PartitionState]:
    """The states of ``topic`` once every one of its ``partitions`` has a leader, as seen by any broker
    (one that has not caught up with a new topic's metadata yet answers "unknown topic")."""
    return await wait_for(
        kafka,
        topic,
        lambda s: len(s) == partitions and all(p.leader >= 0 for p in s.values()),
        timeout_s,
        f"a leader for each of {partitions} partitions",
    )


async def wait_for_new_leader(
    kafka: KafkaSettings, topic: str, partition: int, old: int, timeout_s: float = 60.0
) -> PartitionState:
    """Wait until ``partition`` is led by a broker other than ``old``; return its state then."""
    states = await wait_for(
        kafka,
        topic,
        lambda s: partition in s and s[partition].leader not in (-1, old),
        timeout_s,
        f"a leader of partition {partition} other than broker {old}",
    )
    return states[partition]


async def wait_for_full_isr(
    kafka: KafkaSettings, topic: str, timeout_s: float = 60.0
) -> dict[int, PartitionState]:
    """Wait until every replica of every partition is in sync again (no under-replicated partition)."""
    return await wait_for(
        kafka,
        topic,
        lambda s: bool(s) and all(set(p.isr) == set(p.replicas) for p in s.values()),
        timeout_s,
        "every replica back in sync",
    )
