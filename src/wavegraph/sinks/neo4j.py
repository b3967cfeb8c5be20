"""The Neo4j edge sink: a bounded buffer feeding batched ``UNWIND … MERGE`` writes through a breaker.

- ``write`` appends validated edge events to a bounded buffer (gauge ``ingest_queue_fill_ratio`` =
  fill / capacity); a full buffer or an OPEN breaker raises :class:`SinkBackpressureError`, so the
  consumer pauses instead of buffering without bound.
- ``flush`` writes the buffer in chunks of ``ingest.batch_size`` rows, one Cypher query per chunk,
  through an aiobreaker ``CircuitBreaker(fail_max, timeout_duration)``. Transient Neo4j errors
  (unavailable, session expired, deadlocks) are retried with exponential backoff before they count as
  one breaker failure. On HALF_OPEN one trial chunk decides.
- A chunk failing with a data error (a Neo4j client error, or a value the driver cannot encode) is
  bisected until the offending rows are isolated; those come back as :class:`Rejection` and go to the
  dead-letter topic, the rest is written.
- Writes are idempotent: nodes are merged on (tenant, id), relationships on (src, type, dst); the
  newest event time wins, so replays and out-of-order duplicates leave the same graph.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from aiobreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerListener, CircuitBreakerState
from neo4j import AsyncDriver
from neo4j.exceptions import (
    ClientError,
    DatabaseError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from wavegraph import metrics
from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent
from wavegraph.settings import IngestSettings
from wavegraph.sinks import breaker_state
from wavegraph.streams.sink import Item, Rejection

log = logging.getLogger(__name__)

# The relationship type is spliced into the query text (one query per type in a chunk): Neo4j 5.26's
# dynamic types (`$(r.rel)`) in MERGE were seen reusing the type of an earlier execution from the
# plan cache. Types are safe to splice: events only allow [A-Za-z_][A-Za-z0-9_]* (see events.RelType).
UPSERT = """
UNWIND $rows AS r
MERGE (a:Node {{tenant: r.tenant, id: r.src}})
MERGE (b:Node {{tenant: r.tenant, id: r.dst}})
MERGE (a)-[e:`{rel}`]->(b)
WITH e, r WHERE e.ts IS NULL OR r.ts >= e.ts
SET e += r.props, e.weight = r.weight, e.ts = r.ts, e.event_id = r.event_id, e.tenant = r.tenant
"""

DELETE = """
UNWIND $rows AS r
MATCH (a:Node {{tenant: r.tenant, id: r.src}})-[e:`{rel}`]->(b:Node {{tenant: r.tenant, id: r.dst}})
WHERE e.ts IS NULL OR r.ts >= e.ts
DELETE e
"""

_REL_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_STATE_CODE = {
    CircuitBreakerState.CLOSED: breaker_state.CLOSED,
    CircuitBreakerState.OPEN: breaker_state.OPEN,
    CircuitBreakerState.HALF_OPEN: breaker_state.HALF_OPEN,
}


class _Transient(Exception):
    """A write that kept failing with transient errors after every retry: counts as a breaker failure."""


class _DataError(Exception):
    """A chunk holding at least one row Neo4j refuses; not a breaker failure."""


class _MetricsListener(CircuitBreakerListener):
    def __init__(self) -> None:
        self.transitions: list[tuple[int, int]] = []

    def state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
        before = _STATE_CODE[old.state] if old is not None else breaker_state.CLOSED
        after = _STATE_CODE[new.state]
        self.transitions.append((before, after))
        metrics.BREAKER_STATE.set(after)
        metrics.BREAKER_TRANSITIONS.labels(breaker_state.NAMES[before], breaker_state.NAMES[after]).inc()
        log.warning("neo4j breaker %s -> %s", breaker_state.NAMES[before], breaker_state.NAMES[after])


def edge_row(ev: EdgeEvent) -> dict[str, Any]:
    return {
        "tenant": ev.tenant,
        "src": ev.src,
        "dst": ev.dst,
        "rel": ev.rel,
        "weight": ev.weight,
        "ts": ev.ts,
        "event_id": ev.event_id,
        "props": dict(ev.props),
    }


class Neo4jEdgeSink:
    """Writes edge events to Neo4j; see the module docstring for the contract."""

    def __init__(
        self,
        driver: AsyncDriver,
        ingest: IngestSettings,
        redis_client: aioredis.Redis | None = None,
        database: str | None = None,
    ) -> None:
        self.driver = driver
        self.ingest = ingest
        self.redis = redis_client
        self.database = database
        self.capacity = ingest.buffer_capacity
        self.buffer: list[Item[EdgeEvent]] = []
        self.listener = _MetricsListener()
        self.breaker = CircuitBreaker(
            fail_max=ingest.breaker_fail_max,
            timeout_duration=timedelta(seconds=ingest.breaker_timeout_s),
            listeners=[self.listener],
            name="neo4j",
        )
        self.written = 0
        metrics.BREAKER_STATE.set(breaker_state.CLOSED)
        metrics.INGEST_QUEUE_FILL_RATIO.set(0.0)

    # --- the sink contract ------------------------------------------------------------------------

    async def write(self, batch: list[Item[EdgeEvent]]) -> None:
        """Buffer ``batch``; raise backpressure when the breaker is open or the buffer would overflow."""
        self._raise_if_open()
        if len(self.buffer) + len(batch) > self.capacity and self.buffer:
            raise SinkBackpressureError(max(self.ingest.linger_ms / 1000, 0.05), "neo4j buffer is full")
        self.buffer.extend(batch)
        metrics.INGEST_QUEUE_FILL_RATIO.set(min(1.0, len(self.buffer) / self.capacity))

    async def flush(self) -> list[Rejection[EdgeEvent]]:
        """Write the buffer to Neo4j; return the rows refused for data errors (→ dead letters).

        On backpressure the buffer is dropped: the runtime seeks back and redelivers it.
        """
        items, self.buffer = self.buffer, []
        try:
            rejected: list[Rejection[EdgeEvent]] = []
            size = self.ingest.batch_size
            for start in range(0, len(items), size):
                rejected.extend(await self._write_chunk(items[start : start + size]))
            self.written += len(items) - len(rejected)
            return rejected
        finally:
            metrics.INGEST_QUEUE_FILL_RATIO.set(min(1.0, len(self.buffer) / self.capacity))
            await self._publish_state()

    # --- internals --------------------------------------------------------------------------------

    def seconds_until_half_open(self) -> float:
        """Seconds until an OPEN breaker lets a trial call through (0 when not open).

        Computed from the breaker's storage: aiobreaker's own ``time_until_open`` mixes UTC and local
        time and fails once the timeout has elapsed.
        """
        if self.breaker.current_state != CircuitBreakerState.OPEN:
            return 0.0
        opened_at = self.breaker._state_storage.opened_at  # naive UTC, set by aiobreaker
        if opened_at is None:
            return 0.0
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return max(0.0, (opened_at + self.breaker.timeout_duration - now).total_seconds())

    def _raise_if_open(self) -> None:
        seconds = self.seconds_until_half_open()
        if seconds > 0:
            raise SinkBackpressureError(min(seconds, 5.0), "neo4j circuit breaker is open")

    async def _write_chunk(self, chunk: Sequence[Item[EdgeEvent]]) -> list[Rejection[EdgeEvent]]:
        latest: dict[str, Item[EdgeEvent]] = {}
        for it in chunk:  # within a chunk the newest event per edge wins; ties go to the later offset
            key = it.value.edge_key
            seen = latest.get(key)
            if seen is None or it.value.ts >= seen.value.ts:
                latest[key] = it
        rows = list(latest.values())
        try:
            await self.breaker.call_async(self._run_rows, rows)
            return []
        except CircuitBreakerError as exc:
            raise SinkBackpressureError(
                min(self.ingest.breaker_timeout_s, 5.0), f"neo4j unavailable: {exc}"
            ) from exc
        except _Transient as exc:
            raise SinkBackpressureError(
                self.ingest.retry_backoff_s * 4 or 0.5, f"neo4j unavailable: {exc}"
            ) from exc
        except _DataError:
            return await self._bisect(rows)

    async def _bisect(self, rows: list[Item[EdgeEvent]]) -> list[Rejection[EdgeEvent]]:
        if len(rows) == 1:
            try:
                await self._run_rows(rows)
                return []
            except _DataError as exc:
                return [Rejection(rows[0], f"neo4j refused the row: {exc.__cause__ or exc}")]
        mid = len(rows) // 2
        out: list[Rejection[EdgeEvent]] = []
        for half in (rows[:mid], rows[mid:]):
            try:
                await self.breaker.call_async(self._run_rows, half)
            except _DataError:
                out.extend(await self._bisect(half))
        return out

    async def _run_rows(self, rows: Sequence[Item[EdgeEvent]]) -> None:
        queries: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for it in rows:
            ev = it.value
            if not _REL_TYPE.match(ev.rel):
                raise _DataError(f"rel: {ev.rel!r} is not a valid relationship type")
            queries.setdefault((ev.op, ev.rel), []).append(edge_row(ev))
        attempts = self.ingest.retry_attempts + 1
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                async with self.driver.session(database=self.database) as session:
                    for (op, rel), params in sorted(queries.items(), key=lambda kv: kv[0][0] == "delete"):
                        query = (UPSERT if op == "upsert" else DELETE).format(rel=rel)
                        await session.execute_write(_run, query, params)
                metrics.NEO4J_WRITE_SECONDS.observe(time.perf_counter() - started)
                return
            except (ServiceUnavailable, SessionExpired, TransientError, DatabaseError, OSError) as exc:
                if attempt + 1 == attempts:
                    raise _Transient(str(exc)) from exc
                await asyncio.sleep(self.ingest.retry_backoff_s * (2**attempt))
            except (ClientError, ValueError, TypeError, OverflowError) as exc:
                raise _DataError(str(exc)) from exc
            except Neo4jError as exc:
                raise _Transient(str(exc)) from exc

    async def _publish_state(self) -> None:
        if self.redis is None:
            return
        state = _STATE_CODE[self.breaker.current_state]
        now = time.time()
        snapshot = breaker_state.BreakerSnapshot(state, now + self.seconds_until_half_open(), now)
        try:
            await breaker_state.publish(self.redis, snapshot)
        except Exception as exc:  # the API falls back to its own queue limits; never fail a write on this
            log.debug("could not publish breaker state: %s", exc)


async def _run(tx: Any, query: str, rows: list[dict[str, Any]]) -> None:
    result = await tx.run(query, rows=rows)
    await result.consume()
