"""``GET /v1/stats/{statistic}`` against the real Neo4j and PostgreSQL (in-process apps, lifespan entered).

Each test uses fresh tenants with their own API keys, so it neither sees nor spends anyone else's data.
ε = 1000 makes the noise scale of the counts ≤ 0.004, so such answers equal the exact ones except
with probability < 1e-100: that is how the tenant-isolation test compares released values with the
data it wrote.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest
from test_ingest import api

from wavegraph.clients import neo4j_driver, pg_pool
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


@dataclass
class Tenants:
    names: list[str]
    headers: list[dict[str, str]]
    settings: Settings


@pytest.fixture
async def tenants(services: Settings) -> AsyncIterator[Tenants]:
    names = [f"dpt-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    keys = {f"key-{n}": n for n in names}
    settings = services.model_copy(
        update={
            "http": services.http.model_copy(update={"api_keys": {**services.http.api_keys, **keys}}),
            "dp": services.dp.model_copy(update={"default_epsilon_budget": 3.0}),
        }
    )
    yield Tenants(names, [{"Authorization": f"Bearer key-{n}"} for n in names], settings)
    pool = await pg_pool(services.postgres, min_size=0, max_size=1)
    for table in ("dp_audit_log", "dp_budget", "transcripts"):
        await pool.execute(f"DELETE FROM {table} WHERE tenant = ANY($1)", names)
    await pool.close()
    driver = neo4j_driver(services.neo4j)
    await driver.execute_query("MATCH (n:Node) WHERE n.tenant IN $t DETACH DELETE n", t=names)
    await driver.close()


def with_budget(t: Tenants, budget: float, **dp: Any) -> Settings:
    return t.settings.model_copy(
        update={"dp": t.settings.dp.model_copy(update={"default_epsilon_budget": budget, **dp})}
    )


async def write_graph(settings: Settings, tenant: str, edges: list[tuple[str, str, str]]) -> None:
    driver = neo4j_driver(settings.neo4j)
    for src, rel, dst in edges:  # one statement per type: the sink splices the type the same way
        await driver.execute_query(
            f"MERGE (a:Node {{tenant: $t, id: $s}}) MERGE (b:Node {{tenant: $t, id: $d}}) "
            f"MERGE (a)-[r:`{rel}`]->(b) SET r.tenant = $t, r.weight = 1.0, r.ts = 1.0",
            t=tenant,
            s=src,
            d=dst,
        )
    await driver.close()


async def write_transcripts(
    settings: Settings, tenant: str, windows: list[tuple[float, dt.datetime]]
) -> None:
    conn = await asyncpg.connect(settings.postgres.url)
    await conn.executemany(
        "INSERT INTO transcripts (tenant, stream_id, window_index, start_s, end_s, text, model, event_id, "
        "created_at) VALUES ($1, 's', $2, 0, $3, 'x', 'tiny.en', $4, $5)",
        [(tenant, i, seconds, f"e{i}", at) for i, (seconds, at) in enumerate(windows)],
    )
    await conn.close()


async def test_the_seed_scenario_refuses_with_the_true_remaining_budget(tenants: Tenants) -> None:
    async with api(tenants.settings) as client:
        refused = await client.get("/v1/stats/node_count?epsilon=5", headers=tenants.headers[0])
        assert refused.status_code == 403
        assert refused.headers["X-Epsilon-Remaining"] == "3"
        assert (
            refused.json()["error"] == "epsilon_budget_exceeded"
            and "nothing was spent" in refused.json()["detail"]
        )
        ok = await client.get("/v1/stats/node_count?epsilon=1", headers=tenants.headers[0])
        assert ok.status_code == 200, ok.text
        assert ok.headers["X-Epsilon-Remaining"] == "2"
        body = ok.json()
        assert (body["epsilon_spent"], body["epsilon_remaining"]) == (1, 2)
        assert body["mechanism"]["name"] == "discrete_laplace" and body["mechanism"][
            "scale"
        ] == pytest.approx(2.0)


async def test_a_query_limit_does_not_preempt_the_refusal_header(tenants: Tenants) -> None:
    async with api(with_budget(tenants, 3.0, max_query_epsilon=1.0)) as client:
        refused = await client.get("/v1/stats/node_count?epsilon=5", headers=tenants.headers[0])
        assert refused.status_code == 403 and refused.headers["X-Epsilon-Remaining"] == "3"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/stats/node_count?epsilon=0",
        "/v1/stats/node_count?epsilon=-0.1",
        "/v1/stats/node_count?epsilon=nan",
        "/v1/stats/node_count?epsilon=inf",
        "/v1/stats/node_count?epsilon=Infinity",
        "/v1/stats/node_count",
        "/v1/stats/salaries?epsilon=0.1",
        "/v1/stats/edge_counts?epsilon=0.1",
        "/v1/stats/node_count?epsilon=0.1&tenant=acme",
    ],
)
async def test_bad_requests_are_422_and_spend_nothing(tenants: Tenants, path: str) -> None:
    async with api(tenants.settings) as client:
        answer = await client.get(path, headers=tenants.headers[0])
        assert answer.status_code == 422, answer.text
        assert set(answer.json()) >= {"error", "detail"}
        ok = await client.get("/v1/stats/node_count?epsilon=3", headers=tenants.headers[0])
        assert ok.status_code == 200 and ok.headers["X-Epsilon-Remaining"] == "0"


async def test_no_key_is_401(tenants: Tenants) -> None:
    async with api(tenants.settings) as client:
        assert (await client.get("/v1/stats/node_count?epsilon=1")).status_code == 401


async def test_tenants_see_only_their_own_data_and_spend_only_their_own_budget(tenants: Tenants) -> None:
    a, b = tenants.names
    settings = with_budget(tenants, 100_000.0)
    # a: a star of 5 leaves + one LIKES edge; b: a path of 3 nodes
    await write_graph(settings, a, [("hub", "KNOWS", f"l{i}") for i in range(5)] + [("l0", "LIKES", "l1")])
    await write_graph(settings, b, [("x", "KNOWS", "y"), ("y", "KNOWS", "z")])
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    await write_transcripts(settings, a, [(10.0, hour), (50.0, hour), (5.0, hour - dt.timedelta(hours=1))])
    await write_transcripts(settings, b, [(2.0, hour)])
    start = (hour - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = f"start={start}&bucket=hour"
    ha, hb = tenants.headers

    async with api(settings) as client:

        async def get(path: str, headers: dict[str, str]) -> Any:
            answer = await client.get(f"/v1/stats/{path}", headers=headers)
            assert answer.status_code == 200, answer.text
            return answer.json()["result"]

        assert await get("node_count?epsilon=1000", ha) == {"count": 6}
        assert await get("node_count?epsilon=1000", hb) == {"count": 3}
        assert await get("edge_counts?epsilon=1000&types=KNOWS,LIKES", ha) == {"KNOWS": 5, "LIKES": 1}
        assert await get("edge_counts?epsilon=1000&types=KNOWS,LIKES", hb) == {"KNOWS": 2, "LIKES": 0}
        hist = await get("degree_histogram?epsilon=1000&bound=3", ha)
        assert hist == [{"degree": 1, "count": 3}, {"degree": 2, "count": 2}, {"degree": 3, "count": 1}]
        hist = await get("degree_histogram?epsilon=1000&bound=3", hb)
        assert hist == [{"degree": 1, "count": 2}, {"degree": 2, "count": 1}, {"degree": 3, "count": 0}]
        counts = await get(f"transcript_counts?epsilon=1000&{window}", ha)
        assert [c["count"] for c in counts] == [1, 2]
        counts = await get(f"transcript_counts?epsilon=1000&{window}", hb)
        assert [c["count"] for c in counts] == [0, 1]
        seconds = await get(f"transcribed_seconds?epsilon=1000&{window}", ha)
        # 50 s is clamped to asr.window_s = 30; Δ = 30,000 ms, so the noise scale is 30 ms here
        assert [s["seconds"] for s in seconds] == pytest.approx([5.0, 40.0], abs=1.0)
        seconds = await get(f"transcribed_seconds?epsilon=1000&{window}", hb)
        assert [s["seconds"] for s in seconds] == pytest.approx([0.0, 2.0], abs=1.0)
        # each spent 5 × 1000 of its own budget
        for headers in (ha, hb):
            answer = await client.get("/v1/stats/node_count?epsilon=1", headers=headers)
            assert answer.headers["X-Epsilon-Remaining"] == "94999"


async def test_100_concurrent_requests_on_two_apps_allow_exactly_30(tenants: Tenants) -> None:
    headers = tenants.headers[0]
    async with api(tenants.settings) as one, api(tenants.settings) as two:
        answers = await asyncio.gather(
            *(
                (one if i % 2 else two).get("/v1/stats/node_count?epsilon=0.1", headers=headers)
                for i in range(100)
            )
        )
        codes = [a.status_code for a in answers]
        assert (codes.count(200), codes.count(403)) == (30, 70)
        assert all("X-Epsilon-Remaining" in a.headers for a in answers)
        assert {a.headers["X-Epsilon-Remaining"] for a in answers if a.status_code == 403} == {"0"}
        final = await one.get("/v1/stats/node_count?epsilon=0.1", headers=tenants.headers[1])
        assert final.headers["X-Epsilon-Remaining"] == "2.9"  # the other tenant's budget is untouched


async def test_every_request_is_audited_in_the_log_and_the_table(tenants: Tenants, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="wavegraph.dp.audit")
    headers, tenant = tenants.headers[0], tenants.names[0]
    async with api(tenants.settings) as client:
        ok = await client.get("/v1/stats/degree_histogram?epsilon=0.5&bound=4", headers=headers)
        refused = await client.get("/v1/stats/node_count?epsilon=4", headers=headers)
        assert (ok.status_code, refused.status_code) == (200, 403)
        rows = await client.app_ctx.pg.fetch(  # type: ignore[attr-defined]
            "SELECT record, accepted, mechanism, result_hash FROM dp_audit_log WHERE tenant = $1 ORDER BY id",
            tenant,
        )
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "wavegraph.dp.audit"]
    stored = [orjson.loads(r["record"]) for r in rows]
    assert lines == stored
    assert [(r["statistic"], r["eps_req"], r["allowed"], r["epsilon_remaining"]) for r in stored] == [
        ("degree_histogram", 0.5, True, 2.5),
        ("node_count", 4, False, 2.5),
    ]
    assert rows[0]["mechanism"] == "discrete_laplace" and len(rows[0]["result_hash"]) == 64
    assert rows[1]["result_hash"] is None


async def test_an_unreachable_store_is_503_and_spends_nothing(tenants: Tenants) -> None:
    """Real faults: the app is pointed at ports where nothing listens."""
    down = tenants.settings.model_copy(
        update={"neo4j": tenants.settings.neo4j.model_copy(update={"bolt_port": 1})}
    )
    async with api(down) as client:
        answer = await client.get("/v1/stats/node_count?epsilon=1", headers=tenants.headers[0])
        assert answer.status_code == 503 and answer.json()["error"] == "store_unavailable"
    async with api(tenants.settings) as client:
        answer = await client.get("/v1/stats/transcript_counts?epsilon=1", headers=tenants.headers[0])
        assert answer.headers["X-Epsilon-Remaining"] == "2"


async def test_openapi_describes_the_route(tenants: Tenants) -> None:
    async with api(tenants.settings) as client:
        spec = (await client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/stats/{statistic}"]["get"]
    assert {"200", "401", "403", "422", "503"} <= set(op["responses"])
    assert "X-Epsilon-Remaining" in op["responses"]["403"]["headers"]
