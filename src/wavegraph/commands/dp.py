"""``wavegraph dp budget show|set|reset TENANT [--epsilon E]`` and ``wavegraph dp audit TENANT [--since]``.

Operators' view of the ε ledger (:mod:`wavegraph.sinks.dp_ledger`) in the configured PostgreSQL. ``set``
refuses a budget below what the tenant already spent (exit 1, one sentence); ``reset`` sets the spent ε
back to 0 — the privacy already lost is not undone, so reset only on a documented decision.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from wavegraph.settings import Settings, load_settings
from wavegraph.sinks.dp_ledger import Budget, Ledger, format_epsilon

app = typer.Typer(help="Differential-privacy ε budgets and their audit log.", no_args_is_help=True)
budget_app = typer.Typer(help="Show, set or reset a tenant's ε budget.", no_args_is_help=True)
app.add_typer(budget_app, name="budget")

T = TypeVar("T")
Tenant = Annotated[str, typer.Argument(help="The tenant (as the API keys name it).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _with_ledger(settings: Settings, use: Callable[[Ledger], Awaitable[T]]) -> T:
    from wavegraph.clients import pg_pool

    dp = settings.dp

    async def main() -> T:
        pool = await pg_pool(settings.postgres, min_size=0, max_size=1)
        try:
            ledger = Ledger(
                pool,
                default_budget=Decimal(str(dp.default_epsilon_budget)),
                window=dp.budget_window,
                max_query_epsilon=None
                if dp.max_query_epsilon is None
                else Decimal(str(dp.max_query_epsilon)),
            )
            return await use(ledger)
        finally:
            await pool.close()

    return asyncio.run(main())


def _print_budget(b: Budget, json: bool) -> None:
    data = {
        "tenant": b.tenant,
        "epsilon_budget": format_epsilon(b.budget),
        "epsilon_spent": format_epsilon(b.spent),
        "epsilon_remaining": format_epsilon(b.remaining),
        "window_start": b.window_start.isoformat() if b.window_start else None,
        "stored": b.stored,
    }
    if json:
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
        return
    table = Table(title=f"ε budget of {b.tenant}" + ("" if b.stored else " (no row: the default)"))
    for key in data:
        table.add_column(key)
    table.add_row(*(str(v) if v is not None else "-" for v in data.values()))
    Console().print(table)


def _epsilon(raw: str) -> Decimal:
    try:
        eps = Decimal(raw)
    except InvalidOperation:
        raise typer.BadParameter(f"{raw!r} is not a number") from None
    if not eps.is_finite() or eps <= 0:
        raise typer.BadParameter("must be a finite number > 0")
    return eps


@budget_app.command("show")
def show(tenant: Tenant, json: JsonOpt = False) -> None:
    """The tenant's budget, spent and remaining ε (in the current window)."""
    _print_budget(_with_ledger(load_settings(), lambda ledger: ledger.show(tenant)), json)


@budget_app.command("set")
def set_budget(
    tenant: Tenant,
    epsilon: Annotated[str, typer.Option("--epsilon", help="The tenant's total ε budget (> 0).")],
    json: JsonOpt = False,
) -> None:
    """Set the tenant's ε budget (creates the row if needed)."""
    eps = _epsilon(epsilon)
    try:
        b = _with_ledger(load_settings(), lambda ledger: ledger.set_budget(tenant, eps))
    except ValueError as exc:
        Console(stderr=True).print(f"[bold red]refused:[/] {exc}")
        raise typer.Exit(1) from None
    _print_budget(b, json)


@budget_app.command("reset")
def reset(tenant: Tenant, json: JsonOpt = False) -> None:
    """Set the tenant's spent ε back to 0."""
    _print_budget(_with_ledger(load_settings(), lambda ledger: ledger.reset(tenant)), json)


@app.command("audit")
def audit(
    tenant: Tenant,
    since: Annotated[
        dt.datetime | None, typer.Option("--since", help="Only records at or after this time (UTC if naive).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many records.")] = 1000,
    json: JsonOpt = False,
) -> None:
    """The tenant's audit records (one JSON object per request, accepted or refused), oldest first."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    records: list[dict[str, Any]] = _with_ledger(
        load_settings(), lambda ledger: ledger.audit(tenant, since=since, limit=limit)
    )
    if json:
        for r in records:
            sys.stdout.write(orjson.dumps(r).decode() + "\n")
        return
    table = Table(title=f"ε audit log of {tenant} ({len(records)} records)")
    columns = ("ts", "statistic", "eps_req", "allowed", "epsilon_remaining", "query")
    for c in columns:
        table.add_column(c)
    for r in records:
        table.add_row(*(str(r.get(c, "-")) for c in columns))
    Console().print(table)
