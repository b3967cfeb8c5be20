"""Admission control for ingest: the bounded send queue and the shared Neo4j breaker state.

- :class:`SendQueue` counts events handed to the Kafka producer and not yet acknowledged, across all
  requests (capacity ``settings.http.send_queue``). A batch that does not fit is refused at once (429),
  never queued without bound; a slot is freed when the broker answered for that event, even when the
  request that sent it has already given up waiting.
- :class:`BreakerGate` reads the Neo4j breaker snapshot the edge workers publish in Redis, at most once
  per ``ttl_s`` (concurrent requests share one read). While the breaker is OPEN the API answers 429 with
  ``Retry-After`` = seconds until it lets a trial through. If Redis cannot be read the gate lets
  requests through (Kafka absorbs them; ``/healthz`` reports Redis as down).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wavegraph.sinks import breaker_state
from wavegraph.sinks.breaker_state import BreakerSnapshot

log = logging.getLogger(__name__)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


class SendQueue:
    """A counter of in-flight events with a hard capacity; ``fill_ratio`` = in flight / capacity."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_flight = 0

    @property
    def fill_ratio(self) -> float:
        return self.in_flight / self.capacity

    @property
    def full(self) -> bool:
        return self.in_flight >= self.capacity

    def try_acquire(self, n: int) -> bool:
        """Reserve ``n`` slots if they are all free now; never waits."""
        if n > self.capacity - self.in_flight:
            return False
        self.in_flight += n
        return True

    def release(self, n: int = 1) -> None:
        if n > self.in_flight:
            raise RuntimeError(f"releasing {n} slots but only {self.in_flight} are taken")
        self.in_flight -= n


class BreakerGate:
    """The shared breaker snapshot, cached for ``ttl_s`` seconds; ``None`` when Redis cannot be read."""

    def __init__(
        self,
        client: aioredis.Redis,
        ttl_s: float = 0.2,
        read_timeout_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._read_timeout_s = read_timeout_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._snapshot: BreakerSnapshot | None = None
        self._read_at = -math.inf

    async def snapshot(self) -> BreakerSnapshot | None:
        if self._clock() - self._read_at < self._ttl_s:
            return self._snapshot
        async with self._lock:  # one Redis read per expiry, however many requests wait for it
            if self._clock() - self._read_at < self._ttl_s:
                return self._snapshot
            try:
                async with asyncio.timeout(self._read_timeout_s):
                    self._snapshot = await breaker_state.read(self._client)
            except (RedisError, OSError, TimeoutError, ValueError, KeyError) as exc:
                log.warning("cannot read the Neo4j breaker state from Redis: %r", exc)
                self._snapshot = None
            self._read_at = self._clock()
            return self._snapshot

    async def open_for(self) -> float | None:
        """Seconds until the breaker lets a trial through if it is OPEN now, else ``None``."""
        snap = await self.snapshot()
        if snap is None or snap.state != breaker_state.OPEN:
            return None
        wait = snap.retry_after
        return wait if wait > 0 else None
