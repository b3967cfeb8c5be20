"""``wavegraph bench dp``: the noise of every statistic against its theory, and the ledger under load.

**Accuracy.** A fixed seeded graph (and transcripts) is written for a fresh bench tenant, each
statistic's exact answer is read once from the store (:func:`wavegraph.query.dp_stats.measure`), then
released ``releases`` times (1,000 with ``--quick``, 10,000 otherwise) through
:func:`wavegraph.query.dp_stats.release` — the endpoint's own code. The errors (released − exact, every
coordinate of every release) give the empirical mean (``bias``, with ``bias_z`` = mean / its standard
error), variance and 95th percentile of ``|error|``, next to the discrete Laplace theory
(``variance_ratio`` = empirical ÷ theoretical; goal within 10 %, ``bias_z`` within ±4).

**Ledger.** 100 concurrent clients over two pools of 4 connections (two API processes) spend ε = 0.1
until refused, against a budget that fits ``spends`` of them: ``spends_per_s`` (accepted ÷ wall time),
and ``overspend`` (accepted beyond what fits, plus any difference between the stored spent ε and the
accepted sum; must be 0). The baseline is a bare conditional ``UPDATE`` (no audit, no row creation) under
the same concurrency; ``ratio`` = ledger ÷ bare spends/s. The ``exact_30`` row replays the issue's case
(100 concurrent 0.1 against 3).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from wavegraph.clients import neo4j_driver, pg_pool
from wavegraph.query import dp_stats
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings
from wavegraph.sinks.dp_ledger import Ledger

__all__ = ["run_dp_bench"]

CLIENTS = 100
EPS = Decimal("0.1")
REQUESTS = {
    "edge_counts": {"epsilon": "0.5", "types": "KNOWS,LIKES,FOLLOWS"},
    "degree_histogram": {"epsilon": "0.5", "bound": "16"},
    "node_count": {"epsilon": "0.5"},
    "transcript_counts": {"epsilon": "0.5", "bucket": "hour"},
    "transcribed_seconds": {"epsilon": "0.5", "bucket": "hour"},
}


def run_dp_bench(
    settings: Settings, quick: bool = False, out: Path | None = None, seed: int = 0
) -> dict[str, Any]:
    """Run the bench against the configured Neo4j and PostgreSQL and write ``bench/results/dp.json``."""
    return asyncio.run(_run(settings, quick, out, seed))


async def _run(settings: Settings, quick: bool, out: Path | None, seed: int) -> dict[str, Any]:
    releases = 1000 if quick else 10_000
    spends = 500 if quick else 2000
    nodes, edges = (200, 800) if quick else (1000, 5000)
    tenant = f"dpbench-{uuid.uuid4().hex[:8]}"
    pools = [await pg_pool(settings.postgres, min_size=0, max_size=4) for _ in range(2)]
    driver = neo4j_driver(settings.neo4j)
    try:
        now = await _write_data(settings, driver, pools[0], tenant, nodes, edges, seed)
        rows = []
        for statistic, query in REQUESTS.items():
            plan = dp_stats.plan(
                statistic,
                {**query, "start": (now - dt.timedelta(hours=24)).isoformat(), "end": now.isoformat()}
                if statistic.startswith("transcri")
                else query,
                degree_bound=settings.dp.degree_bound,
                window_s=settings.asr.window_s,
            )
            exact = await dp_stats.measure(
                plan, tenant, neo4j=driver, pg=pools[0], database=settings.neo4j.database
            )
            rows.append(_accuracy(plan, exact, releases))
        ledger_rows, overspend = await _ledger(pools, tenant, spends)
        rows.extend(ledger_rows)
    finally:
        await _cleanup(driver, pools[0], tenant)
        await driver.close()
        for pool in pools:
            await pool.close()
    bare = next(r for r in rows if r.get("case") == "bare_update")["spends_per_s"]
    ledger = next(r for r in rows if r.get("case") == "ledger")["spends_per_s"]
    params = {
        "quick": quick,
        "seed": seed,
        "releases": releases,
        "nodes": nodes,
        "edges": edges,
        "clients": CLIENTS,
    }
    report = build_report("dp", params, rows, ledger / bare if bare else None)
    report["overspend"] = overspend
    write_report(report, out)
    return report


def _accuracy(plan: dp_stats.StatPlan, exact: list[int], releases: int) -> dict[str, Any]:
    truth = np.asarray(exact, dtype=np.int64)
    started = time.perf_counter()
    errors = np.concatenate(
        [np.asarray(dp_stats.release(plan, exact).values) - truth for _ in range(releases)]
    )
    elapsed = time.perf_counter() - started
    _, scale = dp_stats.mechanism(plan.sensitivity, plan.epsilon)
    theory = dp_stats.discrete_laplace_variance(scale)
    n = errors.size
    mean, var = float(errors.mean()), float(errors.var(ddof=1))
    return {
        "statistic": plan.statistic,
        "epsilon": float(plan.epsilon),
        "sensitivity": plan.sensitivity,
        "scale": scale,
        "samples": n,
        "bias": mean,
        "bias_z": mean / math.sqrt(theory / n),
        "variance": var,
        "theory_variance": theory,
        "variance_ratio": var / theory,
        "p95_abs_error": float(np.quantile(np.abs(errors), 0.95)),
        "theory_p95_abs_error": dp_stats.discrete_laplace_abs_quantile(scale, 0.95),
        "within_10pct": abs(var / theory - 1) <= 0.10,
        "releases_per_s": releases / elapsed,
    }


async def _write_data(
    settings: Settings, driver: Any, pool: asyncpg.Pool, tenant: str, nodes: int, edges: int, seed: int
) -> dt.datetime:
    """A seeded random graph of three relationship types and 24 h of transcripts (layout only: no noise)."""
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, nodes, size=(edges, 2))
    types = rng.choice(["KNOWS", "LIKES", "FOLLOWS"], size=edges)
    for rel in ("KNOWS", "LIKES", "FOLLOWS"):
        rows = [{"s": f"n{a}", "d": f"n{b}"} for (a, b), t in zip(pairs, types, strict=True) if t == rel]
        await driver.execute_query(
            "UNWIND $rows AS r MERGE (a:Node {tenant: $t, id: r.s}) "
            "MERGE (b:Node {tenant: $t, id: r.d}) "
            f"MERGE (a)-[e:`{rel}`]->(b) SET e.tenant = $t, e.weight = 1.0, e.ts = 1.0",
            rows=rows,
            t=tenant,
            database_=settings.neo4j.database,
        )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    windows = [
        (
            tenant,
            i,
            float(rng.uniform(1, 40)),
            f"e{i}",
            now - dt.timedelta(seconds=float(rng.uniform(0, 86_400))),
        )
        for i in range(2000)
    ]
    await pool.executemany(
        "INSERT INTO transcripts (tenant, stream_id, window_index, start_s, end_s, text, model, event_id, "
        "created_at) VALUES ($1, 'bench', $2, 0, $3, 'x', 'tiny.en', $4, $5)",
        windows,
    )
    return now


async def _ledger(pools: list[asyncpg.Pool], tenant: str, spends: int) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    overspend = 0
    for case, budget in (("exact_30", Decimal(3)), ("ledger", EPS * spends)):
        name = f"{tenant}-{case}"
        ledgers = [Ledger(p, default_budget=budget) for p in pools]
        accepted = 0
        attempts = 0

        async def client(i: int, name: str = name, ledgers: list[Ledger] = ledgers, case: str = case) -> None:
            nonlocal accepted, attempts
            while True:
                attempts += 1
                out = await ledgers[i % 2].spend(name, EPS, statistic="node_count", query="bench")
                if not out.allowed:
                    return
                accepted += 1
                if case == "exact_30":
                    return

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
        elapsed = time.perf_counter() - started
        stored = await pools[0].fetchval("SELECT epsilon_spent FROM dp_budget WHERE tenant = $1", name)
        fits = int(budget / EPS)
        over = max(0, accepted - fits) + (0 if stored == EPS * accepted else 1)
        overspend += over
        rows.append(
            {
                "case": case,
                "clients": CLIENTS,
                "attempts": attempts,
                "accepted": accepted,
                "fits": fits,
                "overspend": over,
                "spends_per_s": accepted / elapsed,
            }
        )
    rows.append(await _bare(pools, f"{tenant}-bare", spends))
    return rows, overspend


async def _bare(pools: list[asyncpg.Pool], name: str, spends: int) -> dict[str, Any]:
    """The baseline: a conditional UPDATE on an existing row, autocommit, no audit."""
    await pools[0].execute(
        "INSERT INTO dp_budget (tenant, epsilon_budget) VALUES ($1, $2)", name, EPS * spends
    )
    accepted = 0

    async def client(i: int) -> None:
        nonlocal accepted
        while await pools[i % 2].fetchval(
            "UPDATE dp_budget SET epsilon_spent = epsilon_spent + $2 WHERE tenant = $1 "
            "AND epsilon_spent + $2 <= epsilon_budget RETURNING 1",
            name,
            EPS,
        ):
            accepted += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    return {
        "case": "bare_update",
        "clients": CLIENTS,
        "accepted": accepted,
        "fits": spends,
        "spends_per_s": accepted / elapsed,
    }


async def _cleanup(driver: Any, pool: asyncpg.Pool, tenant: str) -> None:
    await pool.execute("DELETE FROM transcripts WHERE tenant = $1", tenant)
    await pool.execute("DELETE FROM dp_audit_log WHERE tenant LIKE $1", f"{tenant}%")
    await pool.execute("DELETE FROM dp_budget WHERE tenant LIKE $1", f"{tenant}%")
    await driver.execute_query("MATCH (n:Node {tenant: $t}) DETACH DELETE n", t=tenant)
