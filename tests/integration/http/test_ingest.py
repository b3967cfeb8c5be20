"""The HTTP ingest API against the real Kafka and Redis: in-process app, lifespan entered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from wavegraph.events import EdgeEvent
from wavegraph.http import create_app
from wavegraph.http.context import ApiContext
from wavegraph.settings import Settings
from wavegraph.sinks import breaker_state

pytestmark = pytest.mark.services

URL = "/v1/ingest/edges"
ACME = {"Authorization": "Bearer dev-key-acme"}
NDJSON = {**ACME, "Content-Type": "application/x-ndjson"}
PARTITIONS = 2


def edge(i: int, tenant: str = "acme", **overrides: Any) -> dict[str, Any]:
    event = {"tenant": tenant, "src": f"n{i}", "dst": f"n{i + 1}", "weight": 1.5, "ts": 1000.0 + i}
    return {**event, **overrides}


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def configure(settings: Settings, topic: str, **http: Any) -> Settings:
    topics = settings.kafka.topics.model_copy(update={"edges": topic})
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topics": topics}),
            "http": settings.http.model_copy(update=http),
        }
    )


@asynccontextmanager
async def api(settings: Settings, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, **options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://wavegraph") as client:
            client.app_ctx = app.state.ctx  # type: ignore[attr-defined]
            yield client


async def topic_records(settings: Settings, topic: str, expected: int, timeout_s: float = 10.0) -> list[Any]:
    """Every record of a fresh topic, once ``expected`` are there (and checked against end offsets)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        ends = await consumer.end_offsets(parts)
        assert sum(ends.values()) == len(records) == expected
        return records
    finally:
        await consumer.stop()


# --- accepted ------------------------------------------------------------------------------------


async def test_json_array_and_object_are_acknowledged_and_in_kafka(services: Settings, topic: str) -> None:
    settings = configure(services, topic)
    events = [edge(i) for i in range(5)]
    async with api(settings) as client:
        r1 = await client.post(URL, json=events, headers=ACME)
        r2 = await client.post(URL, json=edge(99), headers={"X-API-Key": "dev-key-acme"})
    assert (r1.status_code, r1.json()) == (202, {"accepted": 5})
    assert (r2.status_code, r2.json()) == (202, {"accepted": 1})
    assert r1.headers["x-request-id"]
    records = await topic_records(settings, topic, 6)
    got = sorted((EdgeEvent.model_validate_json(r.value) for r in records), key=lambda e: e.event_id)
    sent = sorted((EdgeEvent.model_validate(e) for e in [*events, edge(99)]), key=lambda e: e.event_id)
    assert got == sent
    assert all(r.key == EdgeEvent.model_validate_json(r.value).edge_key.encode() for r in records)


async def test_ndjson_is_acknowledged_and_in_kafka(services: Settings, topic: str) -> None:
    settings = configure(services, topic)
    body = ndjson([edge(i) for i in range(3)]) + b"\r\n\n" + orjson.dumps(edge(3)) + b"\r\n"
    async with api(settings) as client:
        r = await client.post(URL, content=body, headers=NDJSON)
    assert (r.status_code, r.json()) == (202, {"accepted": 4})
    records = await topic_records(settings, topic, 4)
    assert sorted(orjson.loads(r.value)["src"] for r in records) == ["n0", "n1", "n2", "n3"]


# --- rejected ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "line", "field", "words"),
    [
        ("application/x-ndjson", ndjson([edge(0)]) + b'{"tenant": "acme", "src": \n', 2, None, "bad JSON"),
        ("application/json", b'[{"tenant": "acme",\n "src": ]', 2, None, "bad JSON"),
        (
            "application/json",
            orjson.dumps([edge(0), edge(1), {"tenant": "acme", "dst": "b", "ts": 1.0}]),
            3,
            "src",
            "Field required",
        ),
        ("application/x-ndjson", ndjson([edge(0), edge(1, weight="heavy")]), 2, "weight", "number"),
        ("application/json", orjson.dumps(edge(0, ts=-1.0)), 1, "ts", "greater than or equal"),
        ("application/json", b"42", 1, None, "array"),
    ],
    ids=["ndjson-bad-json", "json-bad-json", "missing-field", "wrong-type", "out-of-range", "not-an-event"],
)
async def test_invalid_events_are_422_naming_line_and_field(
    services: Settings,
    topic: str,
    content_type: str,
    body: bytes,
    line: int,
    field: str | None,
    words: str,
) -> None:
    settings = configure(services, topic)
    async with api(settings) as client:
        r = await client.post(URL, content=body, headers={**ACME, "Content-Type": content_type})
    assert r.status_code == 422, r.text
    doc = r.json()
    assert doc["error"] == "invalid_event"
    assert doc["detail"].startswith(f"line {line}: ")
    assert doc["errors"][0]["line"] == line
    assert doc["errors"][0]["field"] == field
    assert words in doc["errors"][0]["reason"]
    await topic_records(settings, topic, 0, timeout_s=0.5)  # all-or-nothing: nothing produced


async def test_auth_tenant_and_media_type(services: Settings, topic: str) -> None:
    settings = configure(services, topic)
    async with api(settings) as client:
        missing = await client.post(URL, json=[edge(0)])
        unknown = await client.post(URL, json=[edge(0)], headers={"Authorization": "Bearer nope"})
        clash = await client.post(URL, json=[edge(0)], headers={**ACME, "X-API-Key": "dev-key-globex"})
        foreign = await client.post(URL, json=[edge(0), edge(1, tenant="globex")], headers=ACME)
        media = await client.post(URL, content=b"src,dst", headers={**ACME, "Content-Type": "text/csv"})
    for r in (missing, unknown, clash):
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert foreign.status_code == 403
    assert foreign.json()["error"] == "forbidden_tenant"
    assert foreign.json()["errors"] == [
        {
            "line": 2,
            "field": "tenant",
            "reason": "tenant: 'globex' is not the tenant of the API key ('acme')",
        }
    ]
    assert media.status_code == 415
    await topic_records(settings, topic, 0, timeout_s=0.5)


async def test_oversized_body_is_413(services: Settings, topic: str) -> None:
    settings = configure(services, topic, max_body_bytes=2048)
    body = ndjson([edge(i) for i in range(40)])
    assert len(body) > 2048

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    async with api(settings) as client:
        declared = await client.post(URL, content=body, headers=NDJSON)
        streamed = await client.post(URL, content=chunks(), headers=NDJSON)
    for r in (declared, streamed):
        assert r.status_code == 413
        assert r.json()["error"] == "body_too_large"


# --- backpressure --------------------------------------------------------------------------------


async def test_open_breaker_in_redis_is_429_with_retry_after(
    services: Settings, topic: str, redis_client: aioredis.Redis
) -> None:
    settings = configure(services, topic)
    previous = await redis_client.get(breaker_state.KEY)
    try:
        async with api(settings) as client:
            now = time.time()  # after start-up, so the window does not depend on how long it took
            await breaker_state.publish(
                redis_client, breaker_state.BreakerSnapshot(breaker_state.OPEN, now + 7.3, now), ttl_s=15
            )
            r = await client.post(URL, json=[edge(0)], headers=ACME)
            health = await client.get("/healthz")
    finally:
        if previous is None:
            await redis_client.delete(breaker_state.KEY)
        else:
            await redis_client.set(breaker_state.KEY, previous, px=15_000)
    assert r.status_code == 429
    assert r.json()["error"] == "breaker_open"
    assert 7 <= int(r.headers["retry-after"]) <= 8
    assert health.status_code == 503
    assert health.json()["checks"]["breaker"]["state"] == "open"
    await topic_records(settings, topic, 0, timeout_s=0.5)


async def test_full_send_queue_is_429_and_never_loses_an_accepted_event(
    services: Settings, topic: str
) -> None:
    settings = configure(services, topic, send_queue=4)
    async with api(settings) as client:
        too_big = await client.post(URL, json=[edge(i) for i in range(5)], headers=ACME)
        answers = await asyncio.gather(
            *(client.post(URL, json=[edge(10 * k + i) for i in range(4)], headers=ACME) for k in range(12))
        )
        ctx: ApiContext = client.app_ctx  # type: ignore[attr-defined]
        assert ctx.send_queue.in_flight == 0
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "batch_too_large"
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {202, 429}
    assert 202 in statuses and 429 in statuses
    rejected = [r for r in answers if r.status_code == 429]
    assert all(r.json()["error"] == "send_queue_full" for r in rejected)
    assert all(int(r.headers["retry-after"]) >= 1 for r in rejected)
    await topic_records(settings, topic, 4 * statuses.count(202))


async def test_no_ack_in_time_is_503_and_frees_the_queue(services: Settings, topic: str) -> None:
    settings = configure(services, topic)
    async with api(settings, ack_timeout_s=1e-6) as client:
        r = await client.post(URL, json=[edge(i) for i in range(3)], headers=ACME)
        ctx: ApiContext = client.app_ctx  # type: ignore[attr-defined]
        await ctx.producer.flush()
        deadline = time.monotonic() + 5.0
        while ctx.send_queue.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert ctx.send_queue.in_flight == 0
    assert r.status_code == 503
    assert r.json()["error"] == "kafka_unavailable"
    assert int(r.headers["retry-after"]) >= 1


# --- the other endpoints -------------------------------------------------------------------------


async def test_healthz_metrics_openapi_and_json_errors(services: Settings, topic: str) -> None:
    settings = configure(services, topic, cors_origins=("http://ui.example",))
    async with api(settings) as client:
        preflight = await client.options(
            URL,
            headers={
                "Origin": "http://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        traced = await client.get("/healthz", headers={"X-Request-ID": "trace-123"})
        health = await client.get("/healthz")
        metrics = await client.get("/metrics")
        spec = await client.get("/openapi.json")
        docs = await client.get("/docs")
        missing = await client.get("/no/such/route")
        wrong_method = await client.get(URL)
    checks = health.json()["checks"]
    assert set(checks) == {"kafka", "redis", "breaker", "cache"}
    assert all(c["ok"] for c in checks.values()), checks  # the real services are up: 200
    assert health.status_code == 200
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert "breaker_state" in metrics.text and "ingest_queue_fill_ratio" in metrics.text
    assert URL in spec.json()["paths"] and "EdgeEvent" in spec.json()["components"]["schemas"]
    assert docs.status_code == 200 and URL in docs.text
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://ui.example"
    assert traced.headers["x-request-id"] == "trace-123"
    assert traced.headers["server-timing"].startswith("app;dur=")


async def test_healthz_is_503_naming_redis_while_redis_is_unreachable(services: Settings, topic: str) -> None:
    """Redis is down for real: the API's Redis client points at a port where nothing listens. Ingest
    goes on (the breaker state cannot be read, so it is not enforced) and /healthz says which."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = int(sock.getsockname()[1])
    settings = configure(services, topic).model_copy(
        update={"redis": services.redis.model_copy(update={"port": dead})}
    )
    async with api(settings) as client:
        health = await client.get("/healthz")
        accepted = await client.post(URL, json=[edge(0)], headers=ACME)
    assert health.status_code == 503
    checks = health.json()["checks"]
    assert checks["redis"]["ok"] is False and checks["kafka"]["ok"] is True
    assert accepted.status_code == 202
    await topic_records(settings, topic, 1)


async def test_every_bad_line_is_reported_up_to_twenty(services: Settings, topic: str) -> None:
    lines = [edge(i) if i % 2 else {"tenant": "acme", "dst": "b", "ts": 1.0} for i in range(50)]
    settings = configure(services, topic)
    async with api(settings) as client:
        r = await client.post(URL, content=ndjson(lines), headers=NDJSON)
    doc = r.json()
    assert r.status_code == 422 and doc["invalid"] == 25
    assert [e["line"] for e in doc["errors"]] == [2 * k + 1 for k in range(20)]  # the first 20 bad lines
    assert all(e["field"] == "src" and "Field required" in e["reason"] for e in doc["errors"])
    assert doc["detail"] == "line 1: src: Field required (and 24 more)"
