"""``GET /healthz``: the status of every dependency the API needs, checked concurrently.

``{"status": "ok" | "degraded", "checks": {"kafka": {...}, "redis": {...}, "breaker": {...}}}``, each
check with ``ok``, ``latency_ms`` and a ``detail``. 200 when every check is ok, else 503. It is a
readiness check (can the API take writes that will reach Neo4j?), not a liveness probe: an OPEN Neo4j
breaker makes it 503 while the process itself is fine.

It stays cheap however often it is polled: a probe (one broker metadata fetch, one Redis ``PING``,
one breaker read) runs at most once per ``http.health_cache_s`` seconds (:class:`HealthCache`); calls
in between get the last result, healthy or not, so an answer can be up to that old (``0`` probes on
every call). Callers that arrive while a probe runs wait for it and share its result.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wavegraph.http.context import ApiContext, context
from wavegraph.http.responses import ORJSONResponse
from wavegraph.sinks import breaker_state

CHECK_TIMEOUT_S = 2.0

Check = Callable[[ApiContext], Awaitable[dict[str, Any]]]


async def healthz(request: Request) -> Response:
    ctx = context(request)
    body = await ctx.health.get(ctx)
    return ORJSONResponse(body, 200 if body["status"] == "ok" else 503)


class HealthCache:
    """The last probe result, reused for ``ttl_s`` seconds of ``clock``; one probe at a time.

    ``probes`` counts the probes that completed (each one fetched the broker metadata once).
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0:
            raise ValueError("ttl_s must be >= 0")
        self.ttl_s = ttl_s
        self.probes = 0
        self._clock = clock
        self._lock = asyncio.Lock()
        self._result: dict[str, Any] = {}
        self._probed_at = -math.inf

    async def get(self, ctx: ApiContext) -> dict[str, Any]:
        """The ``/healthz`` body: the cached one while fresh, else the result of a new probe."""
        if self._fresh():
            return self._result
        seen = self.probes
        async with self._lock:
            if self._fresh() or self.probes != seen:  # a probe finished while this caller waited
                return self._result
            self._result = await probe(ctx)
            self._probed_at = self._clock()
            self.probes += 1
            return self._result

    def _fresh(self) -> bool:
        return self._clock() - self._probed_at < self.ttl_s


async def probe(ctx: ApiContext) -> dict[str, Any]:
    """Run every check concurrently (each within ``CHECK_TIMEOUT_S``) and build the body."""
    checks: dict[str, Check] = {"kafka": check_kafka, "redis": check_redis, "breaker": check_breaker}
    if "cache" in ctx.components:
        checks["cache"] = check_cache
    results = await asyncio.gather(*(_timed(check, ctx) for check in checks.values()))
    healthy = all(r["ok"] for r in results)
    return {"status": "ok" if healthy else "degraded", "checks": dict(zip(checks, results, strict=True))}


async def _timed(check: Check, ctx: ApiContext) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            result = await check(ctx)
    except TimeoutError:
        result = {"ok": False, "detail": f"no answer within {CHECK_TIMEOUT_S:g}s"}
    except Exception as exc:  # a failing dependency is a result here, not an error
        result = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {**result, "latency_ms": round((time.perf_counter() - start) * 1000, 1)}


async def check_kafka(ctx: ApiContext) -> dict[str, Any]:
    cluster = await ctx.producer.client.fetch_all_metadata()
    topic = ctx.settings.kafka.topics.edges
    partitions = cluster.partitions_for_topic(topic)
    brokers = len(cluster.brokers())
    if not partitions:
        return {"ok": False, "detail": f"{brokers} broker(s), topic {topic} missing"}
    return {"ok": True, "detail": f"{brokers} broker(s), {topic}: {len(partitions)} partition(s)"}


async def check_cache(ctx: ApiContext) -> dict[str, Any]:
    """The response cache: ``ok`` is false while Redis fails (answers then go uncached, still correct)."""
    health: dict[str, Any] = ctx.components["cache"].health()
    return health


async def check_redis(ctx: ApiContext) -> dict[str, Any]:
    pong = await ctx.redis.ping()
    return {"ok": bool(pong), "detail": "PONG" if pong else "no PONG"}


async def check_breaker(ctx: ApiContext) -> dict[str, Any]:
    snap = await breaker_state.read(ctx.redis)
    name = breaker_state.NAMES.get(snap.state, str(snap.state))
    is_open = snap.state == breaker_state.OPEN and snap.retry_after > 0
    detail = f"open, half-open in {snap.retry_after:.1f}s" if is_open else name
    return {"ok": not is_open, "state": name, "retry_after": round(snap.retry_after, 1), "detail": detail}
