"""The Redis response cache of ``/v1/search`` and ``/v1/explain/{node}``, with a PI-controlled TTL.

**Use.** Wrap an endpoint: ``Route("/v1/search", cached(search_endpoint, kind="search"), ...)``. The
wrapper answers from Redis when it can and otherwise calls the endpoint and stores its answer. It needs
this module's :func:`start` to have run in the API lifespan (it finds the cache in
``ctx.components["cache"]``); without it, or with ``cache.enabled: false``, it calls the endpoint.

**Key.** ``<cache.key_prefix>resp:<tenant hex>:<kind>:<sha256>`` where the tenant is the API key's (never
the request's) and the digest covers the method, the path, the sorted query parameters, ``Accept``,
and for a body its content type and its canonical JSON (keys sorted; raw bytes when it is not JSON). Two
tenants therefore never share an entry, and ``?k=5&q=x`` hits the entry of ``?q=x&k=5``.

**Value.** Only 200 answers with a body are stored: ``!dH`` (creation time, content-type length), the
content type, the body. A hit answers ``X-Cache: HIT`` and ``Age`` (whole seconds); a miss ``X-Cache:
MISS`` and ``Age: 0``. A request with ``Cache-Control: no-cache`` skips the lookup, runs the endpoint and
refreshes the entry (``X-Cache: MISS``, counted as ``bypass``); ``no-store`` skips the lookup and stores
nothing, and neither does an endpoint answer carrying ``Cache-Control: no-store`` or ``private``. A
Redis value that does not decode is a miss.

**Freshness.** An entry is fresh while its age is at most the *current* TTL (:attr:`ResponseCache.ttl_s`,
set by the controller), so a TTL decrease applies to every entry at once; Redis drops the key itself
after ``cache.expiry_headroom`` (2) times the TTL it had when stored (``PX``), which bounds memory and
lets a lookup tell a *stale* entry (there, too old: counted for the controller's anti-windup) from an
absent one. Entries are not invalidated when data
changes: a cached answer is at most one TTL old.

**Outage.** Any Redis failure (refused, timeout, error reply) degrades to "no cache": the endpoint
answers as usual, :attr:`ResponseCache.available` turns false (for ``/healthz``), a warning is logged
once, and Redis is left alone for ``retry_after_s`` (1 s) before it is tried again, so a dead Redis
costs one socket timeout per second, not one per request.

**TTL loop.** :class:`TtlLoop` closes a measuring window every ``pid.interval_s``: hits / (hits + misses)
of this process (bypasses and Redis failures excluded), and how many misses were stale, go to the PI
controller of
:mod:`wavegraph.query.ttl_controller`, whose TTL is used for new entries. Its state (TTL, integral) is
saved in Redis at ``<prefix>pid`` each cycle and read back at start, so a restart resumes the tuned TTL.
It is one tracked task that ends when the stop event is set (see :func:`start`).

Metrics (declared in :mod:`wavegraph.metrics`):
``cache_hit_ratio``, ``cache_ttl_seconds``, ``cache_requests_total{result=hit|miss|bypass|error}``,
``pid_error``, ``pid_integral``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from wavegraph.http.context import ApiContext, context
from wavegraph.metrics import (
    CACHE_HIT_RATIO,
    CACHE_REQUESTS,
    CACHE_TTL_SECONDS,
    PID_ERROR,
    PID_INTEGRAL,
)
from wavegraph.query.ttl_controller import PiGains, PiStep, TtlController

__all__ = [
    "CACHE_HIT_RATIO",
    "CACHE_REQUESTS",
    "CACHE_TTL_SECONDS",
    "PID_ERROR",
    "PID_INTEGRAL",
    "CachedEntry",
    "ResponseCache",
    "TtlLoop",
    "cached",
    "start",
]

log = logging.getLogger(__name__)


ROUTES: list[BaseRoute] = []
OPENAPI: dict[str, Any] = {}

Endpoint = Callable[[Request], Awaitable[Response]]
_HEAD = struct.Struct("!dH")
_REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class CachedEntry:
    created: float
    content_type: str
    body: bytes

    def encode(self) -> bytes:
        ct = self.content_type.encode()
        return _HEAD.pack(self.created, len(ct)) + ct + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedEntry:
        created, n = _HEAD.unpack_from(raw)
        start = _HEAD.size
        return cls(created, raw[start : start + n].decode(), raw[start + n :])


def _entry(raw: object) -> CachedEntry | None:
    """The entry in a Redis value; None when there is none or it is not one of ours (a miss, not a 500)."""
    if not isinstance(raw, bytes) or not raw:
        return None
    try:
        return CachedEntry.decode(raw)
    except (struct.error, UnicodeDecodeError):
        return None


class ResponseCache:
    """Entries in Redis, the current TTL, the window counters and the availability flag.

    ``clock`` gives entry ages (seconds); ``time_scale`` divides the Redis ``PX`` (benches replay a
    trace ``time_scale`` times faster than real time) and ``expiry_headroom`` multiplies it (Redis may
    keep a key a little longer than it is fresh; freshness is checked on read).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str = "wavegraph:cache:",
        ttl_s: float = 60.0,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
        time_scale: float = 1.0,
        expiry_headroom: float = 1.0,
        retry_after_s: float = 1.0,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.enabled = enabled
        self.available = True
        self.hits = 0
        self.lookups = 0
        self.stale = 0
        self.clock = clock
        self._scale = time_scale
        self._headroom = expiry_headroom
        self._retry_after_s = retry_after_s
        self._down_until = -math.inf

    def key(self, tenant: str, kind: str, normalised: bytes) -> str:
        digest = hashlib.sha256(normalised).hexdigest()
        return f"{self.prefix}resp:{tenant.encode().hex()}:{kind}:{digest}"

    def health(self) -> dict[str, Any]:
        """For ``/healthz``: ``ok`` is false while Redis is failing (answers are then uncached)."""
        return {"ok": self.available, "enabled": self.enabled, "ttl_s": round(self.ttl_s, 3)}

    def take_window(self) -> tuple[int, int, int]:
        """The (hits, lookups, stale) counted since the last call, and reset them; ``stale`` counts the
        misses that found an entry older than the TTL (a longer TTL would have hit)."""
        out = (self.hits, self.lookups, self.stale)
        self.hits = self.lookups = self.stale = 0
        return out

    def _usable(self) -> bool:
        return self.enabled and time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self.available:
            log.warning("response cache disabled for now: Redis failed (%s: %s)", type(exc).__name__, exc)
        self.available = False
        self._down_until = time.monotonic() + self._retry_after_s

    def _recovered(self) -> None:
        if not self.available:
            log.warning("response cache back: Redis answers again")
        self.available = True

    async def lookup(self, key: str) -> CachedEntry | None:
        """The fresh entry under ``key`` or None (a miss, or Redis failing); counts the result."""
        if not self._usable():
            CACHE_REQUESTS.labels("error").inc()
            return None
        try:
            raw = await self.redis.get(key)
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            CACHE_REQUESTS.labels("error").inc()
            return None
        self._recovered()
        self.lookups += 1
        entry = _entry(raw)
        if entry is not None and self.clock() - entry.created <= self.ttl_s:
            self.hits += 1
            CACHE_REQUESTS.labels("hit").inc()
            return entry
        self.stale += entry is not None
        CACHE_REQUESTS.labels("miss").inc()
        return None

    async def store(self, key: str, content_type: str, body: bytes) -> CachedEntry:
        """Store ``body`` under ``key`` with the current TTL; Redis failures are absorbed."""
        entry = CachedEntry(self.clock(), content_type, body)
        if not self._usable():
            return entry
        px = max(1, math.ceil(self.ttl_s * self._headroom / self._scale * 1000))
        try:
            await self.redis.set(key, entry.encode(), px=px)
        except _REDIS_ERRORS as exc:
            self._failed(exc)
        return entry

    async def peek_many(self, keys: Sequence[str]) -> list[CachedEntry | None]:
        """The entries under ``keys`` in one ``MGET``, whatever their age, not counted: for replays,
        which judge freshness (and count hits, stale and absent lookups) on their own clock."""
        if not self._usable():
            return [None] * len(keys)
        try:
            raws = await self.redis.mget(keys)
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return [None] * len(keys)
        self._recovered()
        return [_entry(raw) for raw in raws]

    async def store_many(self, items: Sequence[tuple[str, float, float, bytes]]) -> None:
        """Store ``(key, created, ttl_s, body)`` items in one pipeline (JSON bodies; for replays)."""
        if not items or not self._usable():
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, created, ttl_s, body in items:
            px = max(1, math.ceil(ttl_s * self._headroom / self._scale * 1000))
            pipe.set(key, CachedEntry(created, "application/json", body).encode(), px=px)
        try:
            await pipe.execute()
        except _REDIS_ERRORS as exc:
            self._failed(exc)

    def age(self, entry: CachedEntry) -> float:
        return max(0.0, self.clock() - entry.created)


async def normalised_request(request: Request) -> bytes:
    """The bytes the cache key hashes (see the module docstring)."""
    parts = [request.method.encode(), request.url.path.encode()]
    parts.append(orjson.dumps(sorted(request.query_params.multi_items())))
    parts.append(request.headers.get("accept", "").encode())
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()  # Starlette keeps it, so the endpoint can read it again
        parts.append(request.headers.get("content-type", "").encode())
        try:
            parts.append(orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS))
        except orjson.JSONDecodeError:
            parts.append(body)
    return b"\0".join(parts)


def _directives(headers: Any) -> set[str]:
    return {d.strip() for d in str(headers.get("cache-control", "")).lower().split(",") if d.strip()}


def cached(endpoint: Endpoint, *, kind: str) -> Endpoint:
    """``endpoint`` answered from the response cache when possible (``kind`` names its key space).

    The endpoint must authenticate with ``ctx.auth`` as usual; the wrapper authenticates first (a 401 is
    raised before anything is looked up) to take the tenant for the key.
    """

    async def cached_endpoint(request: Request) -> Response:
        ctx = context(request)
        cache = ctx.components.get("cache")
        if not isinstance(cache, ResponseCache) or not cache.enabled:
            return await endpoint(request)
        tenant = ctx.auth.tenant_for(request.headers)
        key = cache.key(tenant, kind, await normalised_request(request))
        asked = _directives(request.headers)
        if asked & {"no-cache", "no-store"}:
            CACHE_REQUESTS.labels("bypass").inc()
        else:
            entry = await cache.lookup(key)
            if entry is not None:
                headers = {"X-Cache": "HIT", "Age": str(int(cache.age(entry)))}
                return Response(entry.body, 200, headers=headers, media_type=entry.content_type)
        response = await endpoint(request)
        body = getattr(response, "body", None)
        storable = not (asked | _directives(response.headers)) & {"no-store", "private"}
        if response.status_code == 200 and isinstance(body, bytes) and storable:
            await cache.store(key, response.headers.get("content-type", "application/json"), body)
        response.headers["X-Cache"] = "MISS"
        response.headers["Age"] = "0"
        return response

    cached_endpoint.__name__ = getattr(endpoint, "__name__", "endpoint")
    cached_endpoint.__doc__ = endpoint.__doc__
    return cached_endpoint


class TtlLoop:
    """Every ``gains.interval_s``: take the cache's window, update the controller, set the TTL, publish
    the metrics and save the state in Redis (``state_key``). :attr:`cycles` counts closed windows."""

    def __init__(self, cache: ResponseCache, controller: TtlController, *, state_key: str) -> None:
        self.cache = cache
        self.controller = controller
        self.state_key = state_key
        self.cycles = 0
        self._cycle = asyncio.Condition()

    async def restore(self) -> None:
        """Resume from the state saved in Redis, if any (a missing or unreadable state is ignored)."""
        try:
            saved = await self.cache.redis.hgetall(self.state_key)
        except _REDIS_ERRORS as exc:
            log.info("no saved TTL state (%s); starting at %.1f s", exc, self.controller.ttl_s)
            return
        try:
            ttl, integral = float(saved[b"ttl_s"]), float(saved[b"integral"])
        except (KeyError, ValueError):
            return
        self.controller = TtlController(self.controller.gains, ttl, integral=integral)
        self.cache.ttl_s = self.controller.ttl_s

    async def cycle(self, dt_s: float) -> PiStep:
        """Close one window of ``dt_s`` seconds."""
        hits, lookups, stale = self.cache.take_window()
        step = self.controller.update(hits, lookups, dt_s, stale=stale)
        self.cache.ttl_s = step.ttl_s
        if step.hit_ratio is not None:
            CACHE_HIT_RATIO.set(step.hit_ratio)
        CACHE_TTL_SECONDS.set(step.ttl_s)
        PID_ERROR.set(step.error)
        PID_INTEGRAL.set(step.integral)
        with contextlib.suppress(*_REDIS_ERRORS):
            mapping = {"ttl_s": step.ttl_s, "integral": step.integral}
            await self.cache.redis.hset(self.state_key, mapping=mapping)  # type: ignore[arg-type]
        async with self._cycle:
            self.cycles += 1
            self._cycle.notify_all()
        return step

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop`` is set (returns within one Redis call of it)."""
        interval = self.controller.gains.interval_s
        last = time.monotonic()
        while not stop.is_set():
            try:
                async with asyncio.timeout(interval):
                    await stop.wait()
            except TimeoutError:
                now = time.monotonic()
                await self.cycle(now - last)
                last = now

    async def wait_cycles(self, n: int) -> None:
        """Return once at least ``n`` cycles have completed."""
        async with self._cycle:
            await self._cycle.wait_for(lambda: self.cycles >= n)


async def start(ctx: ApiContext, stack: AsyncExitStack) -> None:
    """Put a :class:`ResponseCache` in ``ctx.components["cache"]`` and run its :class:`TtlLoop` as one
    tracked task, stopped (event set, then awaited) when ``stack`` closes. ``ctx.components["cache_loop"]``
    holds the loop."""
    settings = ctx.settings
    cache = ResponseCache(
        ctx.redis,
        prefix=settings.cache.key_prefix,
        ttl_s=settings.cache.ttl_initial_s,
        enabled=settings.cache.enabled,
        expiry_headroom=settings.cache.expiry_headroom,
    )
    ctx.components["cache"] = cache
    if not settings.cache.enabled:
        return
    controller = TtlController(PiGains.from_settings(settings.pid), settings.cache.ttl_initial_s)
    loop = TtlLoop(cache, controller, state_key=f"{settings.cache.key_prefix}pid")
    await loop.restore()
    ctx.components["cache_loop"] = loop
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop), name="wavegraph-cache-ttl")

    async def stop_loop() -> None:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=5.0)
        if not done:  # a Redis call hung past its timeout: give up on it
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("the cache TTL loop failed", exc_info=task.exception())

    stack.push_async_callback(stop_loop)
