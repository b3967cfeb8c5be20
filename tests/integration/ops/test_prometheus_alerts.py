"""A Neo4j outage seen by a real Prometheus: ``Neo4jBreakerOpen`` goes pending, fires, then resolves.

Everything is real. Debian's Prometheus is started through ``wavegraph.devservices`` (a free port, a
private state dir) next to a private Redis (so the processor's OPEN breaker never reaches the shared
Redis the API reads); ``wavegraph run edges`` runs as deployed, in its own process, serving ``/metrics``
on a free port, on private topics of the shared Kafka. Its Neo4j is the shared server reached through a
TCP proxy this test owns: cutting the proxy (listener closed, open connections reset) is a real
connection fault, and the shared Neo4j is never stopped.

The rules are ``deploy/prometheus/rules.yml`` with one change: every ``for:`` is shortened to
:data:`FOR` (``Neo4jBreakerOpen`` says ``1m``) so the scenario takes seconds, not minutes. Names,
expressions and labels are the file's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from tcp_proxy import CuttableProxy

from wavegraph.clients import neo4j_driver
from wavegraph.devservices.ephemeral import ephemeral
from wavegraph.devservices.process import free_port
from wavegraph.settings import Settings
from wavegraph.streams.publish import edge_key, publish_values
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

RULES = Path(__file__).parents[3] / "deploy" / "prometheus" / "rules.yml"
FOR = "3s"
ALERT = "Neo4jBreakerOpen"
EDGES = 20


def shortened_rules(path: Path) -> Path:
    """``rules.yml`` with every ``for:`` replaced by :data:`FOR`, written to ``path``."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30.0) -> Any:
    """Poll ``check`` every 0.2 s until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not (result := await check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.2)
    return result


@contextlib.asynccontextmanager
async def edge_worker(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``wavegraph run edges`` with ``env``; SIGTERM (then SIGKILL) on exit."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wavegraph.cli", "run", "edges",
            env={**os.environ, **env}, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_breaker_alert_fires_during_a_neo4j_outage_and_resolves_after(
    services: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    edges_topic, dlq_topic = f"test.prom.edges.{run}", f"test.prom.dlq.{run}"
    metrics_port = free_port()
    configured = services.model_copy(
        update={
            "prometheus": services.prometheus.model_copy(
                update={
                    "rules_file": shortened_rules(tmp_path / "rules.yml"),
                    "scrape_interval_s": 0.5,
                    "evaluation_interval_s": 0.5,
                }
            ),
            "metrics": services.metrics.model_copy(
                update={"edges_port": metrics_port, "audio_port": 0, "graph_port": 0}
            ),
            "http": services.http.model_copy(update={"port": free_port()}),  # no API: a target that is down
        }
    )
    proxy = CuttableProxy(services.neo4j.host, services.neo4j.bolt_port)
    await proxy.restore()
    await ensure_topics(services.kafka, [edges_topic, dlq_topic], partitions=1)
    try:
        async with (
            ephemeral(configured, "redis", "prometheus", parent=tmp_path) as scratch,
            httpx.AsyncClient(base_url=f"http://{scratch.prometheus.host}:{scratch.prometheus.port}") as prom,
        ):
            env = {
                "WAVEGRAPH_KAFKA__TOPICS__EDGES": edges_topic,
                "WAVEGRAPH_KAFKA__TOPICS__DLQ": dlq_topic,
                "WAVEGRAPH_RUNTIME__GROUP_PREFIX": f"prom-{run}",
                "WAVEGRAPH_NEO4J__BOLT_PORT": str(proxy.port),
                "WAVEGRAPH_REDIS__PORT": str(scratch.redis.port),
                "WAVEGRAPH_METRICS__EDGES_PORT": str(metrics_port),
                "WAVEGRAPH_INGEST__BREAKER_FAIL_MAX": "1",
                "WAVEGRAPH_INGEST__RETRY_ATTEMPTS": "0",
                "WAVEGRAPH_INGEST__BREAKER_TIMEOUT_S": "8",
                "WAVEGRAPH_INGEST__LINGER_MS": "0",
            }
            async with edge_worker(env, tmp_path / "edges.log") as worker:

                async def alert() -> dict[str, Any] | None:
                    if worker.returncode is not None:
                        pytest.fail(
                            f"run edges exited {worker.returncode}: {(tmp_path / 'edges.log').read_text()}"
                        )
                    answer = (await prom.get("/api/v1/alerts")).json()["data"]["alerts"]
                    return next((a for a in answer if a["labels"]["alertname"] == ALERT), None)

                async def query(expr: str) -> list[dict[str, Any]]:
                    r = await prom.get("/api/v1/query", params={"query": expr})
                    result: list[dict[str, Any]] = r.json()["data"]["result"]
                    return result

                async def targets() -> dict[str, dict[str, Any]]:
                    r = await prom.get("/api/v1/targets", params={"state": "active"})
                    return {t["labels"]["job"]: t for t in r.json()["data"]["activeTargets"]}

                # The processor is a scrape target and its breaker reads closed; the API is configured too.
                await until(
                    lambda: query('breaker_state{job="wavegraph-edges"} == 0'), "the processor's first scrape"
                )
                jobs = await targets()
                assert jobs["wavegraph-edges"]["scrapeUrl"] == f"http://127.0.0.1:{metrics_port}/metrics"
                assert jobs["wavegraph-edges"]["health"] == "up"
                assert (
                    jobs["wavegraph-api"]["scrapeUrl"] == f"http://127.0.0.1:{configured.http.port}/metrics"
                )
                assert await alert() is None

                await proxy.cut()
                values = [
                    orjson.dumps({"tenant": "acme", "src": f"{run}s{i}", "dst": f"{run}d{i}", "ts": 1.0})
                    for i in range(EDGES)
                ]
                assert await publish_values(services.kafka, edges_topic, values, key=edge_key) == EDGES

                states: list[str] = []

                async def firing() -> dict[str, Any] | None:
                    found = await alert()
                    if found is not None and (not states or states[-1] != found["state"]):
                        states.append(found["state"])
                    return found if found is not None and found["state"] == "firing" else None

                fired = await until(firing, f"{ALERT} to fire")
                assert states == ["pending", "firing"]
                assert fired["labels"]["job"] == "wavegraph-edges"
                assert fired["labels"]["severity"] == "page"
                assert float(fired["value"]) == 1.0

                await proxy.restore()
                await until(lambda: _absent(alert), f"{ALERT} to resolve")
                rules = (await prom.get("/api/v1/rules", params={"type": "alert"})).json()["data"]["groups"]
                rule = next(r for g in rules for r in g["rules"] if r["name"] == ALERT)
                assert rule["state"] == "inactive"
                assert rule["duration"] == 3.0  # the shortened `for:` is the one Prometheus evaluates
                sunk = await until(
                    lambda: query(f'sum(wavegraph_events_sunk_total{{job="wavegraph-edges"}}) == {EDGES}'),
                    "every held edge to reach Neo4j after recovery",
                )
                assert float(sunk[0]["value"][1]) == EDGES
    finally:
        await proxy.cut()
        await delete_topics(services.kafka, [edges_topic, dlq_topic])
        driver = neo4j_driver(services.neo4j)
        try:
            await driver.execute_query(
                "MATCH (n:Node {tenant: 'acme'}) WHERE n.id STARTS WITH $p DETACH DELETE n", p=run
            )
        finally:
            await driver.close()


async def _absent(check: Callable[[], Awaitable[Any]]) -> bool:
    return await check() is None
