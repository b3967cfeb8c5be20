"""An HTTP load client for ``POST /v1/ingest/edges``: batches at a target rate, with or without retries.

Open loop: batch ``k`` is due at ``start + k * batch_size / rate`` whatever happened to the earlier
ones, and its latency is measured from that due time (so a slow server cannot hide its queueing by
slowing the client down, i.e. no coordinated omission); the service latency, from the first send to
the final answer, is kept too. At most ``max_in_flight`` requests run at once;
a batch that has to wait for a free slot starts late, and ``max_start_lag_s`` says by how much.

With ``honour_retry_after`` a batch answered 429 or 503 (or lost to a transport error) is sent again
after the ``Retry-After`` the server asked for, until it is accepted or ``give_up_after_s`` passed since
it was due: the "client that honours Retry-After" of the 2x-burst figure. Without it, every 429 is a
final rejection: the "rejected (429) < 1 %" figure. Pure library: the scenarios in this package build on
:func:`run_load`.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

EventFactory = Callable[[int], Mapping[str, Any]]  # sequence number → one edge event as a dict

INGEST_PATH = "/v1/ingest/edges"
TRANSPORT_RETRY_S = 1.0  # wait before resending after a transport error, in retry mode
RETRY_JITTER = 0.1  # retries wait Retry-After × (1 + U(0, jitter)), so rejected clients do not return in step


@dataclass(frozen=True)
class LoadPlan:
    rate: float  # events offered per second
    seconds: float
    batch_size: int = 100
    honour_retry_after: bool = False
    max_in_flight: int = 256
    give_up_after_s: float = 300.0
    request_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.seconds <= 0 or self.batch_size < 1 or self.max_in_flight < 1:
            raise ValueError(f"invalid load plan: {self}")

    @property
    def total_events(self) -> int:
        return max(1, round(self.rate * self.seconds))

    @property
    def interval_s(self) -> float:
        return self.batch_size / self.rate


@dataclass
class LoadStats:
    """What happened: counts of events and answers, and per-batch latency (due time → final answer)."""

    offered_events: int = 0
    accepted_events: int = 0
    accepted_batches: int = 0
    rejected_events: int = 0  # finally refused with 429 (only without retries)
    answers_429: int = 0  # every 429 answer, retries included
    answers_503: int = 0
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # final failures by kind: http_<status>, exception
    failed_events: int = 0
    latencies_s: list[float] = field(default_factory=list)
    service_s: list[float] = field(default_factory=list)  # first send → final answer (no client lag)
    max_start_lag_s: float = 0.0
    elapsed_s: float = 0.0
    accepted_ids: list[str] = field(default_factory=list)  # events' "event_id", when they carry one

    def percentile(self, q: float, service: bool = False) -> float:
        """Nearest-rank percentile of the batch latencies in seconds (``nan`` when there are none):
        from the due time, or with ``service`` from the first send (what the server and retries cost,
        without the client's own lag when it cannot keep to the schedule)."""
        return nearest_rank(self.service_s if service else self.latencies_s, q)

    @property
    def p50_s(self) -> float:
        return self.percentile(50)

    @property
    def p99_s(self) -> float:
        return self.percentile(99)

    @property
    def rejected_ratio(self) -> float:
        return self.rejected_events / self.offered_events if self.offered_events else 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (latencies in milliseconds)."""

        def ms(seconds: float) -> float | None:
            return None if math.isnan(seconds) else round(seconds * 1000, 2)

        return {
            "offered_events": self.offered_events,
            "accepted_events": self.accepted_events,
            "rejected_events": self.rejected_events,
            "failed_events": self.failed_events,
            "rejected_ratio": round(self.rejected_ratio, 6),
            "answers_429": self.answers_429,
            "answers_503": self.answers_503,
            "retries": self.retries,
            "errors": dict(self.errors),
            "p50_ms": ms(self.p50_s),
            "p99_ms": ms(self.p99_s),
            "service_p50_ms": ms(self.percentile(50, service=True)),
            "service_p99_ms": ms(self.percentile(99, service=True)),
            "max_start_lag_ms": ms(self.max_start_lag_s),
            "elapsed_s": round(self.elapsed_s, 3),
            "accepted_per_s": round(self.accepted_events / self.elapsed_s, 1) if self.elapsed_s else 0.0,
        }


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``values`` (``nan`` when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def retry_after_s(response: httpx.Response, default: float = 1.0) -> float:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; ``default`` if absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


async def run_load(
    client: httpx.AsyncClient,
    api_key: str,
    plan: LoadPlan,
    make_event: EventFactory,
    stop: asyncio.Event | None = None,
) -> LoadStats:
    """Offer ``plan.total_events`` events from ``make_event`` to ``client`` (its ``base_url`` is the API).

    Returns when every batch got its final answer; ``stop`` ends the offering early (batches already
    sent still finish).
    """
    stats = LoadStats()
    slots = asyncio.Semaphore(plan.max_in_flight)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/x-ndjson"}
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.TaskGroup() as tasks:
        for k, first in enumerate(range(0, plan.total_events, plan.batch_size)):
            due = start + k * plan.interval_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            if stop is not None and stop.is_set():
                break
            events = [make_event(i) for i in range(first, min(first + plan.batch_size, plan.total_events))]
            stats.offered_events += len(events)
            await slots.acquire()
            stats.max_start_lag_s = max(stats.max_start_lag_s, loop.time() - due)
            tasks.create_task(_send_batch(client, headers, plan, events, due, stats, slots))
    stats.elapsed_s = loop.time() - start
    return stats


async def _send_batch(
    client: httpx.AsyncClient,
    headers: Mapping[str, str],
    plan: LoadPlan,
    events: Sequence[Mapping[str, Any]],
    due: float,
    stats: LoadStats,
    slots: asyncio.Semaphore,
) -> None:
    loop = asyncio.get_running_loop()
    body = b"\n".join(orjson.dumps(e) for e in events)
    sent = loop.time()
    try:
        while True:
            wait, kind = await _attempt(client, headers, plan, body, events, stats)
            if kind == "accepted":
                break
            give_up = loop.time() + wait - due > plan.give_up_after_s
            if not plan.honour_retry_after or wait < 0 or give_up:
                if kind == "http_429":
                    stats.rejected_events += len(events)
                else:
                    stats.errors[kind] += 1
                    stats.failed_events += len(events)
                break
            stats.retries += 1
            await asyncio.sleep(wait * (1 + random.uniform(0, RETRY_JITTER)))
    finally:
        stats.latencies_s.append(loop.time() - due)
        stats.service_s.append(loop.time() - sent)
        slots.release()


async def _attempt(
    client: httpx.AsyncClient,
    headers: Mapping[str, str],
    plan: LoadPlan,
    body: bytes,
    events: Sequence[Mapping[str, Any]],
    stats: LoadStats,
) -> tuple[float, str]:
    """One POST. Returns (seconds to wait before a retry, or -1 if retrying is pointless; outcome kind)."""
    try:
        response = await client.post(
            INGEST_PATH, content=body, headers=headers, timeout=plan.request_timeout_s
        )
    except httpx.TransportError as exc:  # timeouts included: the batch may have been written, resend it
        return TRANSPORT_RETRY_S, type(exc).__name__
    if response.status_code == 202:
        stats.accepted_batches += 1
        stats.accepted_events += len(events)
        stats.accepted_ids.extend(str(e["event_id"]) for e in events if "event_id" in e)
        return 0.0, "accepted"
    if response.status_code == 429:
        stats.answers_429 += 1
        return retry_after_s(response), "http_429"
    if response.status_code == 503:
        stats.answers_503 += 1
        return retry_after_s(response), "http_503"
    return -1.0, f"http_{response.status_code}"
