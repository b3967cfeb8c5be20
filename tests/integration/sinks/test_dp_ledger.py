"""The ε ledger against the real PostgreSQL: atomic spends across pools, windows, audit, the CLI."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from wavegraph.clients import pg_pool
from wavegraph.commands.dp import app as dp_cli
from wavegraph.settings import Settings
from wavegraph.sinks.dp_ledger import Ledger

pytestmark = pytest.mark.services

D = Decimal
Pools = tuple[asyncpg.Pool, asyncpg.Pool]


@pytest.fixture
async def pools(services: Settings) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two pools, as two API processes would hold (4 connections each, like the API's)."""
    a = await pg_pool(services.postgres, min_size=0, max_size=4)
    b = await pg_pool(services.postgres, min_size=0, max_size=4)
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def tenants(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> AsyncIterator[list[str]]:
    names = [f"dptest-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    yield names
    await pools[0].execute("DELETE FROM dp_audit_log WHERE tenant = ANY($1)", names)
    await pools[0].execute("DELETE FROM dp_budget WHERE tenant = ANY($1)", names)


def ledger(pool: asyncpg.Pool, **options: Any) -> Ledger:
    return Ledger(pool, default_budget=D(3), **options)


async def test_a_tenant_without_a_row_gets_the_default_budget(pools: Pools, tenants: list[str]) -> None:
    led = ledger(pools[0])
    before = await led.show(tenants[0])
    assert (before.budget, before.spent, before.stored) == (D(3), D(0), False)
    out = await led.spend(tenants[0], D("0.5"), statistic="node_count", query="node_count")
    assert out.allowed and out.epsilon_remaining == D("2.5")
    assert (await led.show(tenants[0])).stored


async def test_100_concurrent_spends_from_two_pools_allow_exactly_30(
    pools: Pools, tenants: list[str]
) -> None:
    a, b = ledger(pools[0]), ledger(pools[1])
    tenant = tenants[0]
    outcomes = await asyncio.gather(
        *(
            (a if i % 2 else b).spend(tenant, D("0.1"), statistic="node_count", query="node_count")
            for i in range(100)
        )
    )
    assert sum(o.allowed for o in outcomes) == 30
    row = await pools[0].fetchrow(
        "SELECT epsilon_budget, epsilon_spent FROM dp_budget WHERE tenant = $1", tenant
    )
    assert (row["epsilon_budget"], row["epsilon_spent"]) == (D(3), D(3))
    audit = await pools[0].fetch("SELECT accepted FROM dp_audit_log WHERE tenant = $1", tenant)
    assert len(audit) == 100 and sum(r["accepted"] for r in audit) == 30
    assert min(o.epsilon_remaining for o in outcomes) == D(0)


async def test_a_refusal_spends_nothing_and_is_audited_in_the_table_and_the_log(
    pools, tenants, caplog
) -> None:
    led, tenant = ledger(pools[0]), tenants[0]
    caplog.set_level(logging.INFO, logger="wavegraph.dp.audit")
    refused = await led.spend(tenant, D(5), statistic="node_count", query="node_count?")
    ok = await led.spend(tenant, D(1), statistic="edge_counts", query="edge_counts?types=A", mechanism="m")
    assert not refused.allowed and refused.reason == "budget" and refused.epsilon_remaining == D(3)
    assert ok.allowed and ok.epsilon_remaining == D(2)
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "wavegraph.dp.audit"]
    stored = await led.audit(tenant)
    assert lines == stored
    assert [(r["eps_req"], r["allowed"], r["statistic"], r["epsilon_remaining"]) for r in stored] == [
        (5, False, "node_count", 3),
        (1, True, "edge_counts", 2),
    ]
    assert all(
        {"tenant", "eps_req", "allowed", "statistic", "epsilon_remaining", "ts"} <= set(r) for r in stored
    )
    rows = await pools[0].fetch(
        "SELECT accepted, epsilon, spent_after, epsilon_remaining FROM dp_audit_log "
        "WHERE tenant = $1 ORDER BY id",
        tenant,
    )
    assert [tuple(r) for r in rows] == [(False, D(5), D(0), D(3)), (True, D(1), D(1), D(2))]


async def test_the_query_limit_refuses_with_the_true_remaining_budget(
    pools: Pools, tenants: list[str]
) -> None:
    led = ledger(pools[0], max_query_epsilon=D(1))
    out = await led.spend(tenants[0], D(2), statistic="node_count", query="node_count")
    assert (out.allowed, out.reason, out.epsilon_remaining) == (False, "query_limit", D(3))


async def test_two_tenants_have_separate_budgets(pools: Pools, tenants: list[str]) -> None:
    led = ledger(pools[0])
    a, b = tenants
    await led.set_budget(a, D(2))
    for _ in range(3):
        await led.spend(b, D(1), statistic="node_count", query="node_count")
    assert (await led.show(a)).remaining == D(2)
    assert (await led.show(b)).remaining == D(0)
    assert await led.audit(a) == []


async def test_a_day_window_refills_the_budget(pools: Pools, tenants: list[str]) -> None:
    led, tenant = ledger(pools[0], window="day"), tenants[0]
    assert (await led.spend(tenant, D(3), statistic="node_count", query="q")).allowed
    assert not (await led.spend(tenant, D("0.1"), statistic="node_count", query="q")).allowed
    # the passage of a day, written directly: the ledger has no way to move time
    await pools[0].execute(
        "UPDATE dp_budget SET window_start = window_start - interval '1 day' WHERE tenant = $1", tenant
    )
    assert (await led.show(tenant)).spent == D(0)
    out = await led.spend(tenant, D("0.1"), statistic="node_count", query="q")
    assert out.allowed and out.epsilon_remaining == D("2.9")
    # without a window the same stale row still counts what it spent
    assert (await ledger(pools[0]).show(tenant)).spent == D("0.1")


async def test_set_refuses_a_budget_below_the_spent_epsilon_and_reset_clears_it(
    pools: Pools, tenants: list[str]
) -> None:
    led, tenant = ledger(pools[0]), tenants[0]
    await led.spend(tenant, D(2), statistic="node_count", query="q")
    with pytest.raises(ValueError, match="already spent"):
        await led.set_budget(tenant, D(1))
    assert (await led.reset(tenant)).spent == D(0)
    assert (await led.set_budget(tenant, D(1))).remaining == D(1)


async def test_the_operators_cli(tenants: list[str]) -> None:
    """``wavegraph dp budget set/show/reset`` and ``dp audit`` (each runs its own event loop: in a thread)."""
    tenant = tenants[0]
    cli = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = cli.invoke(dp_cli, list(args))
        return result.exit_code, result.stdout

    code, out = await asyncio.to_thread(run, "budget", "set", tenant, "--epsilon", "4", "--json")
    assert code == 0 and orjson.loads(out)["epsilon_remaining"] == "4"
    code, out = await asyncio.to_thread(run, "budget", "show", tenant, "--json")
    assert orjson.loads(out)["epsilon_budget"] == "4"
    code, out = await asyncio.to_thread(run, "budget", "set", tenant, "--epsilon", "nan")
    assert code != 0
    code, out = await asyncio.to_thread(run, "audit", tenant, "--json", "--since", "2000-01-01T00:00:00")
    assert code == 0 and out == ""
    code, _ = await asyncio.to_thread(run, "budget", "reset", tenant)
    assert code == 0
