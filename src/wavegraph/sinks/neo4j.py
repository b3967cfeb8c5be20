"""The Neo4j edge sink: a bounded buffer feeding batched ``UNWIND … MERGE`` writes through a breaker.

- ``write`` appends validated edge events (:class:`~wavegraph.events.EdgeLike`: the runtime's
  :class:`~wavegraph.events.DecodedEdge` structs or :class:`~wavegraph.events.EdgeEvent` models) to a
  bounded buffer (gauge ``ingest_queue_fill_ratio`` = fill / capacity); a full buffer or an OPEN
  breaker raises :class:`SinkBackpressureError`, so the consumer pauses instead of buffering without
  bound.
- ``flush`` writes the buffer in chunks of ``ingest.batch_size`` rows, one Cypher query per chunk and
  relationship type, through an aiobreaker ``CircuitBreaker(fail_max, timeout_duration)``.

Every failure is one of three kinds, decided by :func:`classify` (and only the first counts toward
``fail_max``):

- **outage** — Neo4j cannot be reached or cannot work now (connection refused or lost, session expired,
  transient errors such as deadlocks, ``DatabaseError``, transaction time-outs, cluster role changes).
  Retried ``ingest.retry_attempts`` times with exponential backoff, then one breaker failure and
  :class:`SinkBackpressureError`: nothing is committed, the batch is redelivered.
- **data error** — Neo4j or the driver refuses the content of a row (a statement/type/constraint
  ``ClientError``, a value the driver cannot pack). Never a breaker failure, in any breaker state (to the
  breaker it is a success: the database answered), never raised out of ``flush``: the chunk is bisected
  until the offending rows are isolated; they come back as :class:`Rejection` (→ dead-letter topic with
  Neo4j's reason), the rest is written. A poison row in a HALF_OPEN trial closes the breaker, as any
  answer from a working database does.
- **fatal** — an answer no retry and no dead letter can fix (authentication or authorization, a
  read-only database, a database that does not exist): :class:`SinkFatalError`, which stops the
  processor with one sentence instead of looping on the same batch.

Order does not depend on arrival: among the events of one edge the one with the greatest
:attr:`~wavegraph.events.EdgeEvent.precedence` wins (newer ``ts``; at equal ``ts`` a delete; then the
larger event id, then the larger weight), both within a chunk and against what is stored. A delete
keeps a tombstone ``(:EdgeTombstone {tenant, key, ts})``, so an older upsert arriving later (another
partition, a replay) does not bring the edge back. When the winning event of an edge in a chunk is
refused, the next one of that edge is written in its place (and so on): older valid events are neither
lost silently nor committed unwritten.

Writes are idempotent: nodes are merged on (tenant, id), relationships on (src, type, dst), tombstones on
(tenant, key), so replays and out-of-order duplicates leave the same graph.

The breaker's state is published to Redis (:mod:`~wavegraph.sinks.breaker_state`) after every flush and by
:meth:`Neo4jEdgeSink.heartbeat` every ``ingest.breaker_state_ttl_s / 3`` seconds, with a TTL of
``ingest.breaker_state_ttl_s``: a crashed worker's OPEN state expires within that time.
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
from wavegraph.errors import SinkBackpressureError, SinkFatalError
from wavegraph.events import EdgeLike
from wavegraph.settings import IngestSettings
from wavegraph.sinks import breaker_state
from wavegraph.streams.sink import Item, Rejection

log = logging.getLogger(__name__)

# The relationship type is spliced into the query text (one query per type in a chunk): Neo4j 5.26's
# dynamic types (`$(r.rel)`) in MERGE were seen reusing the type of an earlier execution from the
# plan cache. Types are safe to splice: events only allow [A-Za-z_][A-Za-z0-9_]* (see events.RelType).
UPSERT = """
UNWIND $rows AS r
OPTIONAL MATCH (t:EdgeTombstone {{tenant: r.tenant, key: r.key}})
WITH r, t WHERE t IS NULL OR r.ts > t.ts
MERGE (a:Node {{tenant: r.tenant, id: r.src}})
MERGE (b:Node {{tenant: r.tenant, id: r.dst}})
MERGE (a)-[e:`{rel}`]->(b)
WITH e, r WHERE e.ts IS NULL OR r.ts > e.ts OR (r.ts = e.ts AND (r.event_id > e.event_id
    OR (r.event_id = e.event_id AND r.weight >= e.weight)))
SET e += r.props, e.weight = r.weight, e.ts = r.ts, e.event_id = r.event_id, e.tenant = r.tenant
"""

DELETE = """
UNWIND $rows AS r
MERGE (t:EdgeTombstone {{tenant: r.tenant, key: r.key}})
SET t.ts = CASE WHEN t.ts IS NULL OR r.ts > t.ts THEN r.ts ELSE t.ts END,
    t.src = r.src, t.rel = r.rel, t.dst = r.dst
WITH r
MATCH (a:Node {{tenant: r.tenant, id: r.src}})-[e:`{rel}`]->(b:Node {{tenant: r.tenant, id: r.dst}})
WHERE e.ts IS NULL OR e.ts <= r.ts
DELETE e
"""

_REL_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_STATE_CODE = {
    CircuitBreakerState.CLOSED: breaker_state.CLOSED,
    CircuitBreakerState.OPEN: breaker_state.OPEN,
    CircuitBreakerState.HALF_OPEN: breaker_state.HALF_OPEN,
}


class _Transient(Exception):
    """A write that kept failing with outage errors after every retry: counts as a breaker failure."""


class _DataError(Exception):
    """A chunk holding at least one row Neo4j refuses; not a breaker failure."""


Kind = str  # "outage" | "data" | "fatal"

_FATAL_PREFIXES = (
    "Neo.ClientError.Security.",
    "Neo.ClientError.Database.DatabaseNotFound",
    "Neo.ClientError.General.ForbiddenOnReadOnlyDatabase",
    "Neo.ClientError.General.WriteOnReadOnlyAccessDatabase",
    "Neo.ClientError.General.ForbiddenReadOnlyDatabase",
)
_OUTAGE_PREFIXES = ("Neo.ClientError.Transaction.", "Neo.ClientError.Cluster.")


def classify(exc: BaseException) -> Kind:
    """``"outage"``, ``"data"`` or ``"fatal"`` for an exception raised by a write (module docstring)."""
    code = getattr(exc, "code", None) or ""
    if isinstance(exc, Neo4jError) and code.startswith(_FATAL_PREFIXES):
        return "fatal"  # before the classes: the driver files a read-only refusal under TransientError
    if isinstance(exc, ServiceUnavailable | SessionExpired | TransientError | DatabaseError | OSError):
        return "outage"
    if isinstance(exc, TimeoutError):
        return "outage"
    if isinstance(exc, ClientError):
        if code.startswith(_OUTAGE_PREFIXES):
            return "outage"
        return "data"
    if isinstance(exc, ValueError | TypeError | OverflowError):  # the driver cannot pack a value
        return "data"
    return "outage"


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


def edge_row(ev: EdgeLike) -> dict[str, Any]:
    """The ``UNWIND`` row of an edge event (an :class:`~wavegraph.events.EdgeEvent` or a decoded one)."""
    return {
        "tenant": ev.tenant,
        "src": ev.src,
        "dst": ev.dst,
        "rel": ev.rel,
        "weight": ev.weight,
        "ts": ev.ts,
        "event_id": ev.event_id,
        "key": ev.edge_key,
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
        self.buffer: list[Item[EdgeLike]] = []
        self.listener = _MetricsListener()
        self.breaker = CircuitBreaker(
            fail_max=ingest.breaker_fail_max,
            timeout_duration=timedelta(seconds=ingest.breaker_timeout_s),
            listeners=[self.listener],
            exclude=[_DataError, SinkFatalError],
            name="neo4j",
        )
        self.written = 0
        metrics.BREAKER_STATE.set(breaker_state.CLOSED)
        metrics.INGEST_QUEUE_FILL_RATIO.set(0.0)

    # --- the sink contract ------------------------------------------------------------------------

    async def write(self, batch: Sequence[Item[EdgeLike]]) -> None:
        """Buffer ``batch``; raise backpressure when the breaker is open or the buffer would overflow."""
        self._raise_if_open()
        if len(self.buffer) + len(batch) > self.capacity and self.buffer:
            raise SinkBackpressureError(max(self.ingest.linger_ms / 1000, 0.05), "neo4j buffer is full")
        self.buffer.extend(batch)
        metrics.INGEST_QUEUE_FILL_RATIO.set(min(1.0, len(self.buffer) / self.capacity))

    async def flush(self) -> list[Rejection[EdgeLike]]:
        """Write the buffer to Neo4j; return the rows refused for data errors (→ dead letters).

        On backpressure the buffer is dropped: the runtime seeks back and redelivers it.
        """
        items, self.buffer = self.buffer, []
        try:
            rejected: list[Rejection[EdgeLike]] = []
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

    async def _write_chunk(self, chunk: Sequence[Item[EdgeLike]]) -> list[Rejection[EdgeLike]]:
        """Write the winning event of each edge in ``chunk``; when one is refused, the next of that
        edge takes its place, until each edge has a written event or none left."""
        candidates: dict[str, list[Item[EdgeLike]]] = {}
        for it in chunk:
            candidates.setdefault(it.value.edge_key, []).append(it)
        for events in candidates.values():  # the winner last, so pop() takes it
            events.sort(key=lambda it: it.value.precedence)
        rows = [events.pop() for events in candidates.values()]
        rejected: list[Rejection[EdgeLike]] = []
        while rows:
            refused = await self._write_rows(rows)
            rejected.extend(refused)
            rows = [nxt.pop() for rej in refused if (nxt := candidates[rej.item.value.edge_key])]
        return rejected

    async def _write_rows(self, rows: list[Item[EdgeLike]]) -> list[Rejection[EdgeLike]]:
        """Write ``rows``; bisect on a data error; return the rows refused for their content."""
        try:
            await self._guarded(rows)
            return []
        except _DataError as exc:
            if len(rows) == 1:
                return [Rejection(rows[0], f"neo4j refused the row: {exc}", "sink_refused")]
        mid = len(rows) // 2
        return [*await self._write_rows(rows[:mid]), *await self._write_rows(rows[mid:])]

    async def _guarded(self, rows: Sequence[Item[EdgeLike]]) -> None:
        """One write through the breaker: an outage becomes :class:`SinkBackpressureError`; data errors
        (:class:`_DataError`) and :class:`SinkFatalError` pass through without counting as failures."""
        try:
            await self.breaker.call_async(self._run_rows, rows)
        except CircuitBreakerError as exc:
            raise SinkBackpressureError(
                min(self.ingest.breaker_timeout_s, 5.0), f"neo4j unavailable: {exc}"
            ) from exc
        except _Transient as exc:
            raise SinkBackpressureError(
                self.ingest.retry_backoff_s * 4 or 0.5, f"neo4j unavailable: {exc}"
            ) from exc

    async def _run_rows(self, rows: Sequence[Item[EdgeLike]]) -> None:
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
            except Exception as exc:
                kind = classify(exc)
                if kind == "data":
                    raise _DataError(_reason(exc)) from exc
                if kind == "fatal":
                    raise SinkFatalError(
                        f"Neo4j refused every write ({_reason(exc)}); "
                        "fix the credentials, the database name or its access mode, then restart"
                    ) from exc
                if attempt + 1 == attempts:
                    raise _Transient(str(exc)) from exc
                metrics.NEO4J_RETRIES.inc()
                await asyncio.sleep(self.ingest.retry_backoff_s * (2**attempt))

    async def heartbeat(self, stop: asyncio.Event) -> None:
        """Publish the breaker's state every third of ``ingest.breaker_state_ttl_s`` until ``stop``."""
        period = self.ingest.breaker_state_ttl_s / 3
        while not stop.is_set():
            await self._publish_state()
            try:
                await asyncio.wait_for(stop.wait(), period)
            except TimeoutError:
                pass

    async def _publish_state(self) -> None:
        if self.redis is None:
            return
        state = _STATE_CODE[self.breaker.current_state]
        now = time.time()
        snapshot = breaker_state.BreakerSnapshot(state, now + self.seconds_until_half_open(), now)
        try:
            await breaker_state.publish(self.redis, snapshot, self.ingest.breaker_state_ttl_s)
        except Exception as exc:  # the API falls back to its own queue limits; never fail a write on this
            log.debug("could not publish breaker state: %s", exc)


def _reason(exc: BaseException) -> str:
    """Neo4j's own words: its status code and message, on one line."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = f"{code}: {message}" if code else f"{type(exc).__name__}: {message}"
    return " ".join(text.split())[:500]


async def _run(tx: Any, query: str, rows: list[dict[str, Any]]) -> None:
    result = await tx.run(query, rows=rows)
    await result.consume()
