"""The Redis response cache on the real Redis, wrapped around a small endpoint of this test in the real app.

The convergence test replays a short bursty trace through the same cache with a scaled clock."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wavegraph.bench.cache import PiPolicy, evaluate, replay, synthetic_trace
from wavegraph.clients import redis_client
from wavegraph.http import cache as cache_component
from wavegraph.http import create_app
from wavegraph.http.cache import CACHE_REQUESTS, ResponseCache, cached
from wavegraph.http.context import ApiContext, context
from wavegraph.http.errors import ApiError
from wavegraph.http.responses import ORJSONResponse
from wavegraph.query.ttl_controller import PiGains
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

ACME = {"Authorization": "Bearer dev-key-acme"}
GLOBEX = {"Authorization": "Bearer dev-key-globex"}
URL = "/test/cached-search"
CALLS: Counter[str] = Counter()


async def search_like(request: Request) -> Response:
    """Answers with the tenant, the query and how many times it really ran for that tenant."""
    tenant = context(request).auth.tenant_for(request.headers)
    q = request.query_params.get("q")
    if request.method == "POST":
        q = orjson.loads(await request.body())["q"]
    if q == "bad":
        raise ApiError(400, "bad_query", "q=bad is refused")
    CALLS[tenant] += 1
    return ORJSONResponse({"tenant": tenant, "q": q, "call": CALLS[tenant]})


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ApiContext]]:
    prefix = f"test:cache:{uuid.uuid4().hex[:8]}:"
    cache = settings.cache.model_copy(update={"key_prefix": prefix, "enabled": True})  # off in the suite
    settings = settings.model_copy(update={"cache": cache})
    app = create_app(settings)
    app.router.routes.append(Route(URL, cached(search_like, kind="search"), methods=["GET", "POST"]))
    async with app.router.lifespan_context(app):
        ctx: ApiContext = app.state.ctx
        async with AsyncExitStack() as stack:
            await cache_component.start(ctx, stack)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://wavegraph") as client:
                try:
                    yield client, ctx
                finally:
                    async for key in ctx.redis.scan_iter(match=f"{prefix}*"):
                        await ctx.redis.unlink(key)


@pytest.fixture(autouse=True)
def reset_calls() -> None:
    CALLS.clear()


async def test_second_identical_request_is_a_hit_whatever_the_parameter_order(services: Settings) -> None:
    async with api(services) as (client, _):
        first = await client.get(URL, params=[("q", "kafka"), ("k", "5")], headers=ACME)
        second = await client.get(URL, params=[("k", "5"), ("q", "kafka")], headers=ACME)
    assert first.status_code == second.status_code == 200
    assert (first.headers["x-cache"], first.headers["age"]) == ("MISS", "0")
    assert second.headers["x-cache"] == "HIT"
    assert int(second.headers["age"]) >= 0
    assert second.json() == first.json() == {"tenant": "acme", "q": "kafka", "call": 1}
    assert second.headers["content-type"] == first.headers["content-type"]
    assert CALLS["acme"] == 1


async def test_json_bodies_with_reordered_keys_share_an_entry(services: Settings) -> None:
    async with api(services) as (client, _):
        a = await client.post(URL, content=b'{"q": "graph", "k": 3}', headers=ACME)
        b = await client.post(URL, content=b'{"k":3,"q":"graph"}', headers=ACME)
        c = await client.post(URL, content=b'{"k":4,"q":"graph"}', headers=ACME)
    assert (a.headers["x-cache"], b.headers["x-cache"], c.headers["x-cache"]) == ("MISS", "HIT", "MISS")
    assert CALLS["acme"] == 2


async def test_two_tenants_never_share_an_entry(services: Settings) -> None:
    async with api(services) as (client, _):
        acme = await client.get(URL, params={"q": "same"}, headers=ACME)
        globex = await client.get(URL, params={"q": "same"}, headers=GLOBEX)
        globex_again = await client.get(URL, params={"q": "same"}, headers=GLOBEX)
        acme_again = await client.get(URL, params={"q": "same"}, headers=ACME)
    assert globex.headers["x-cache"] == "MISS"
    assert globex.json()["tenant"] == "globex"
    assert (globex_again.headers["x-cache"], globex_again.json()["tenant"]) == ("HIT", "globex")
    assert (acme_again.headers["x-cache"], acme_again.json()) == ("HIT", acme.json())
    assert acme.json()["tenant"] == "acme"
    assert CALLS == {"acme": 1, "globex": 1}


async def test_no_cache_runs_the_endpoint_and_refreshes_the_entry(services: Settings) -> None:
    bypasses = CACHE_REQUESTS.labels("bypass")._value.get()
    async with api(services) as (client, _):
        await client.get(URL, params={"q": "x"}, headers=ACME)
        fresh = await client.get(URL, params={"q": "x"}, headers={**ACME, "Cache-Control": "no-cache"})
        after = await client.get(URL, params={"q": "x"}, headers=ACME)
    assert fresh.headers["x-cache"] == "MISS"
    assert fresh.json()["call"] == 2
    assert (after.headers["x-cache"], after.json()["call"]) == ("HIT", 2)
    assert CACHE_REQUESTS.labels("bypass")._value.get() == bypasses + 1


async def test_errors_and_unauthenticated_requests_are_not_cached(services: Settings) -> None:
    async with api(services) as (client, ctx):
        bad = [await client.get(URL, params={"q": "bad"}, headers=ACME) for _ in range(2)]
        anonymous = await client.get(URL, params={"q": "x"})
        keys = [k async for k in ctx.redis.scan_iter(match=f"{ctx.components['cache'].prefix}resp:*")]
    assert [r.status_code for r in bad] == [400, 400]
    assert all(r.json()["error"] == "bad_query" and "x-cache" not in r.headers for r in bad)
    assert anonymous.status_code == 401
    assert keys == []


async def test_a_shorter_ttl_applies_to_entries_already_stored(services: Settings) -> None:
    async with api(services) as (client, ctx):
        cache: ResponseCache = ctx.components["cache"]
        now = [1000.0]
        cache.clock = lambda: now[0]
        await client.get(URL, params={"q": "t"}, headers=ACME)
        now[0] += 30.0
        cache.ttl_s = 60.0
        hit = await client.get(URL, params={"q": "t"}, headers=ACME)
        cache.ttl_s = 10.0  # the controller shortened the TTL: the 30 s old entry is stale now
        stale = await client.get(URL, params={"q": "t"}, headers=ACME)
    assert (hit.headers["x-cache"], hit.headers["age"]) == ("HIT", "30")
    assert (stale.headers["x-cache"], stale.json()["call"]) == ("MISS", 2)


async def test_a_redis_outage_degrades_to_no_cache(services: Settings) -> None:
    """Redis is really unreachable here: the cache is given a client for a port nobody listens on."""
    dead = redis_client(services.redis.model_copy(update={"port": 1}), timeout_s=0.2)
    try:
        async with api(services) as (client, ctx):
            ctx.components["cache"] = outage = ResponseCache(dead, prefix="test:dead:")
            answers = [await client.get(URL, params={"q": "down"}, headers=ACME) for _ in range(3)]
            health = outage.health()
    finally:
        await dead.aclose()
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [r.json()["call"] for r in answers] == [1, 2, 3]
    assert all(r.headers["x-cache"] == "MISS" for r in answers)
    assert outage.available is False
    assert health["ok"] is False


async def test_the_pi_loop_converges_on_a_bursty_trace(services: Settings) -> None:
    """Two regimes of 150 s (new catalogue, 1.5× rate at the change), replayed 40× faster than real time."""
    trace = synthetic_trace(
        seed=3, regime_s=150.0, rate=100.0, regimes=((20_000, 0.8, 1.0), (50_000, 0.7, 1.5))
    )
    gains = PiGains.from_settings(services.pid)
    client = redis_client(services.redis, timeout_s=5.0)
    prefix = f"test:converge:{uuid.uuid4().hex[:8]}:"
    try:
        cache = ResponseCache(client, prefix=prefix, time_scale=40.0, expiry_headroom=3.0)
        run = await replay(cache, PiPolicy(gains, 60.0), trace, scale=40.0, interval_s=gains.interval_s)
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.unlink(key)
        await client.aclose()
    figures = evaluate(run, trace, gains.target, gains.interval_s)
    assert figures["overshoot"] < 0.05
    last = round(10.0 / gains.interval_s)  # the last 10 s of the trace
    assert abs(sum(run.hits[-last:]) / sum(run.lookups[-last:]) - gains.target) <= 0.05
    assert figures["settling_s"] < 150.0


async def test_no_store_stores_nothing_and_a_foreign_value_is_a_miss(services: Settings) -> None:
    async with api(services) as (client, ctx):
        cache: ResponseCache = ctx.components["cache"]
        await client.get(URL, params={"q": "ns"}, headers={**ACME, "Cache-Control": "no-store"})
        keys = [k async for k in ctx.redis.scan_iter(match=f"{cache.prefix}resp:*")]
        await client.get(URL, params={"q": "junk"}, headers=ACME)
        [key] = [k async for k in ctx.redis.scan_iter(match=f"{cache.prefix}resp:*")]
        await ctx.redis.set(key, b"\x01")  # not a cache entry
        after = await client.get(URL, params={"q": "junk"}, headers=ACME)
    assert keys == []
    assert (after.status_code, after.headers["x-cache"]) == (200, "MISS")
