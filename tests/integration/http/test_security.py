"""Secure defaults of the HTTP API against the real Kafka and Redis: development keys, the ``/metrics``
key and the ``/healthz`` probe cache (in-process app, lifespan entered, as in ``test_ingest.py``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from wavegraph.errors import ConfigError
from wavegraph.http import create_app
from wavegraph.http.context import ApiContext
from wavegraph.http.health import HealthCache
from wavegraph.settings import Settings
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services

URL = "/v1/ingest/edges"
PARTITIONS = 2
REAL_KEY = f"wg-live-{uuid.uuid4().hex}"
MIXED_KEYS = {"dev-key-acme": "acme", "dev-key-globex": "globex", REAL_KEY: "acme"}
EDGE = {"tenant": "acme", "src": "a", "dst": "b", "weight": 1.0, "ts": 1000.0}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def topic(services: Settings) -> AsyncIterator[str]:
    name = f"test.http.security.{uuid.uuid4().hex[:10]}"
    await ensure_topics(services.kafka, [name], partitions=PARTITIONS)
    yield name
    await delete_topics(services.kafka, [name])


def configure(settings: Settings, topic: str | None = None, **http: Any) -> Settings:
    kafka = settings.kafka
    if topic is not None:
        kafka = kafka.model_copy(update={"topics": kafka.topics.model_copy(update={"edges": topic})})
    return settings.model_copy(update={"kafka": kafka, "http": settings.http.model_copy(update=http)})


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ApiContext]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://wavegraph") as client:
            yield client, app.state.ctx


async def records_in(settings: Settings, topic: str) -> int:
    """How many records the topic holds (sum of its end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def assert_401(r: httpx.Response, error: str, *detail_parts: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["error"] == error
    for part in detail_parts:
        assert part in body["detail"]


# --- development keys ----------------------------------------------------------------------------


def test_only_dev_keys_without_the_flag_refuse_to_start(settings: Settings) -> None:
    refused = configure(settings, allow_dev_keys=False)  # the default keys: dev-key-acme, dev-key-globex
    assert refused.http.api_keys and all(k.startswith("dev-key-") for k in refused.http.api_keys)
    with pytest.raises(ConfigError, match=r"http\.allow_dev_keys"):
        create_app(refused)
    create_app(configure(settings, allow_dev_keys=True))  # the same keys with the flag: builds


async def test_dev_keys_get_401_naming_the_flag_and_a_real_key_works(services: Settings, topic: str) -> None:
    settings = configure(services, topic, api_keys=MIXED_KEYS, allow_dev_keys=False)
    async with api(settings) as (client, _):
        dev = await client.post(URL, json=[EDGE], headers=bearer("dev-key-acme"))
        dev_header = await client.post(URL, json=[EDGE], headers={"X-API-Key": "dev-key-globex"})
        dev_unknown = await client.post(URL, json=[EDGE], headers=bearer("dev-key-nobody"))
        real = await client.post(URL, json=[EDGE], headers=bearer(REAL_KEY))
        real_header = await client.post(URL, json=[EDGE, EDGE], headers={"X-API-Key": REAL_KEY})
        unknown = await client.post(URL, json=[EDGE], headers=bearer("wg-live-unknown"))
    for r in (dev, dev_header, dev_unknown):
        assert_401(r, "dev_key_refused", "http.allow_dev_keys", "WAVEGRAPH_HTTP__ALLOW_DEV_KEYS")
    assert_401(unknown, "unauthorized", "unknown API key")
    assert (real.status_code, real.json()) == (202, {"accepted": 1})
    assert (real_header.status_code, real_header.json()) == (202, {"accepted": 2})
    assert await records_in(settings, topic) == 3  # only the real key's events reached Kafka


async def test_dev_keys_work_with_the_flag(services: Settings, topic: str) -> None:
    settings = configure(services, topic, api_keys=MIXED_KEYS, allow_dev_keys=True)
    async with api(settings) as (client, _):
        dev = await client.post(URL, json=[EDGE], headers=bearer("dev-key-acme"))
        real = await client.post(URL, json=[EDGE], headers=bearer(REAL_KEY))
    assert (dev.status_code, dev.json()) == (202, {"accepted": 1})
    assert real.status_code == 202
    assert await records_in(settings, topic) == 2


# --- /metrics ------------------------------------------------------------------------------------


async def test_metrics_key_is_required_when_set(services: Settings) -> None:
    secret = f"scrape-{uuid.uuid4().hex}"
    settings = configure(services, api_keys=MIXED_KEYS, metrics_key=secret)
    async with api(settings) as (client, _):
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers=bearer(secret + "x"))
        api_key = await client.get("/metrics", headers=bearer(REAL_KEY))
        conflicting = await client.get("/metrics", headers={**bearer(secret), "X-API-Key": "other"})
        right = await client.get("/metrics", headers=bearer(secret))
        right_header = await client.get("/metrics", headers={"X-API-Key": secret})
    assert_401(missing, "unauthorized", "missing metrics key")
    assert_401(wrong, "unauthorized", "wrong metrics key")
    assert_401(api_key, "unauthorized", "wrong metrics key")
    assert_401(conflicting, "unauthorized", "different keys")
    for r in (right, right_header):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert "breaker_state" in r.text


async def test_metrics_open_without_a_key_and_blank_key_refused(services: Settings) -> None:
    async with api(configure(services, metrics_key=None)) as (client, _):
        r = await client.get("/metrics")
    assert r.status_code == 200 and "breaker_state" in r.text
    with pytest.raises(ConfigError, match=r"http\.metrics_key"):
        create_app(configure(services, metrics_key="  "))


# --- /healthz ------------------------------------------------------------------------------------


async def test_healthz_probes_once_however_many_calls_within_the_cache(services: Settings) -> None:
    settings = configure(services, health_cache_s=3600.0)
    async with api(settings) as (client, ctx):
        burst = await asyncio.gather(*(client.get("/healthz") for _ in range(20)))
        later = [await client.get("/healthz") for _ in range(5)]
        assert ctx.health.probes == 1
    bodies = [r.json() for r in [*burst, *later]]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["checks"]["kafka"]["ok"], bodies[0]
    assert all(r.status_code == (200 if bodies[0]["status"] == "ok" else 503) for r in [*burst, *later])


async def test_healthz_without_cache_probes_on_every_call(services: Settings) -> None:
    async with api(configure(services, health_cache_s=0.0)) as (client, ctx):
        for _ in range(3):
            r = await client.get("/healthz")
            assert r.json()["checks"]["kafka"]["ok"]
        assert ctx.health.probes == 3


async def test_health_cache_expires_after_its_ttl_and_shares_a_running_probe(services: Settings) -> None:
    now = [100.0]
    cache = HealthCache(1.0, clock=lambda: now[0])  # a hand-moved clock: no wall-clock timing
    async with api(services) as (_, ctx):
        first = await asyncio.gather(*(cache.get(ctx) for _ in range(10)))  # concurrent: one probe
        assert cache.probes == 1 and all(b is first[0] for b in first)
        now[0] += 0.9
        assert await cache.get(ctx) is first[0] and cache.probes == 1
        now[0] += 0.2  # 1.1 s after the probe: stale
        fresh = await cache.get(ctx)
        assert cache.probes == 2 and fresh is not first[0]
        assert fresh["checks"]["kafka"]["ok"]
