"""Hostile ingest bodies against the real Kafka and Redis: what no sink can store is a 422 naming the
field, checked before the breaker (a malformed request is never a 429), and the key is the edge's."""

from __future__ import annotations

import time

import orjson
import pytest
import redis.asyncio as aioredis
from test_ingest import ACME, NDJSON, URL, api, configure, edge, topic_records

from wavegraph.events import EdgeEvent, edge_record_key
from wavegraph.settings import Settings
from wavegraph.sinks import breaker_state
from wavegraph.streams.publish import edge_key

pytestmark = pytest.mark.services


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            b'[{"tenant":"acme","src":"a","dst":"b","ts":1,"props":{"n":100000000000000000000}}]',
            "props.n",
            "64-bit",
        ),
        (b'{"tenant":"acme","src":"a\\u0000","dst":"b","ts":1}', "src", "NUL"),
        (b'{"tenant":"acme","src":"a","dst":"b","ts":1,"props":{"k":"v\\u0000"}}', "props.k", "NUL"),
        (
            b'{"tenant":"acme","src":"a","dst":"b","ts":1,"props":{"k":{"deep":{"er":1}}}}',
            "props.k",
            "nested",
        ),
        (b'{"tenant":"acme","src":"a","dst":"b","ts":1e400}', "ts", "finite"),
    ],
)
async def test_what_no_sink_can_store_is_422_naming_the_field(
    services: Settings, topic: str, body: bytes, field: str, words: str
) -> None:
    async with api(configure(services, topic)) as client:
        r = await client.post(URL, content=body, headers={**ACME, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    doc = r.json()
    assert doc["error"] == "invalid_event"
    assert doc["errors"][0]["field"] == field
    assert words in doc["errors"][0]["reason"]
    await topic_records(services, topic, 0, timeout_s=0.5)


async def test_too_many_props_is_422(services: Settings, topic: str) -> None:
    props = {f"p{i}": i for i in range(65)}
    async with api(configure(services, topic)) as client:
        r = await client.post(URL, json=[edge(0, props=props)], headers=ACME)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "props"


async def test_a_malformed_request_is_422_even_while_the_breaker_is_open(
    services: Settings, topic: str, redis_client: aioredis.Redis
) -> None:
    settings = configure(services, topic)
    previous = await redis_client.get(breaker_state.KEY)
    now = time.time()
    try:
        await breaker_state.publish(
            redis_client, breaker_state.BreakerSnapshot(breaker_state.OPEN, now + 30, now), ttl_s=15
        )
        async with api(settings) as client:
            bad = await client.post(URL, content=b'{"tenant":"acme","src":"a"}\n', headers=NDJSON)
            good = await client.post(URL, json=[edge(0)], headers=ACME)
    finally:
        if previous is None:
            await redis_client.delete(breaker_state.KEY)
        else:
            await redis_client.set(breaker_state.KEY, previous, px=15_000)
    assert bad.status_code == 422
    assert good.status_code == 429  # a valid request still meets the open breaker


async def test_http_and_produce_key_an_edge_the_same_way(services: Settings, topic: str) -> None:
    """The defect behind this test: ``produce edges`` sent records unkeyed while the API hashed them."""
    event = edge(3, rel="KNOWS")
    async with api(configure(services, topic)) as client:
        r = await client.post(URL, json=[event], headers=ACME)
    assert r.status_code == 202
    (record,) = await topic_records(services, topic, 1)
    expected = edge_record_key("acme", "n3", "KNOWS", "n4")
    assert record.key == expected
    assert edge_key(orjson.dumps(event)) == expected
    assert EdgeEvent.model_validate(event).record_key == expected
