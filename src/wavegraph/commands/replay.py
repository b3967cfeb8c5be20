"""``wavegraph replay``: rebuild derived stores from the retained topics and compare checksums.

``--into live`` (the default) replays into the configured stores: checksums before and after are
printed (equal: the store already held what the log says; a wiped tenant comes back). ``--into
ephemeral`` replays into a throwaway Neo4j started for the run and compares it with the live one,
tenant by tenant; it exits 1 when they differ (the live store has drifted from its log).
"""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from wavegraph.settings import Settings, load_settings


class Target(StrEnum):
    neo4j = "neo4j"


class Into(StrEnum):
    live = "live"
    ephemeral = "ephemeral"


def replay_command(
    tenant: str | None = typer.Option(None, "--tenant", help="Replay this tenant only (default: all)."),
    target: Target = typer.Option(Target.neo4j, "--target", help="The store to rebuild."),
    into: Into = typer.Option(Into.live, "--into", help="Rebuild the live store or a throwaway one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Rebuild the graph from wavegraph.edges.v1 and print a checksum comparison."""
    settings = load_settings()
    result = asyncio.run(replay(settings, tenant=tenant, into=into.value))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print(result)
    if into is Into.ephemeral and not result["equal"]:
        raise typer.Exit(1)


async def replay(settings: Settings, *, tenant: str | None, into: str) -> dict[str, Any]:
    """Run the replay (see the module docstring); return what was read, written and compared."""
    from wavegraph.clients import neo4j_driver
    from wavegraph.commands.progress import terminal_progress
    from wavegraph.processors.replay.checksum import StoreChecksum, graph_checksum
    from wavegraph.processors.replay.edges import replay_edges

    live = neo4j_driver(settings.neo4j)
    db = settings.neo4j.database
    left: dict[str, StoreChecksum] = {}
    try:
        with terminal_progress() as progress:
            if into == "live":
                names = ("before", "after")
                if tenant:  # all tenants: not known before the log is read
                    left[tenant] = await graph_checksum(live, tenant, db)
                stats = await replay_edges(settings, live, tenant=tenant, database=db, progress=progress)
                tenants = sorted({tenant} if tenant else stats.tenants)
                right = {t: await graph_checksum(live, t, db) for t in tenants}
            else:
                from wavegraph.loadtest.scope import private_services

                names = ("live", "replayed")
                async with private_services(settings, "neo4j") as private:
                    scratch, scratch_db = neo4j_driver(private.neo4j), private.neo4j.database
                    try:
                        stats = await replay_edges(
                            settings, scratch, tenant=tenant, database=scratch_db, progress=progress
                        )
                        tenants = sorted({tenant} if tenant else stats.tenants)
                        right = {t: await graph_checksum(scratch, t, scratch_db) for t in tenants}
                    finally:
                        await scratch.close()
                left = {t: await graph_checksum(live, t, db) for t in tenants}
    finally:
        await live.close()
    rows = []
    for t in tenants:
        a, b = left.get(t), right[t]
        rows.append(
            {
                "tenant": t,
                names[0]: a.as_dict() if a else None,
                names[1]: b.as_dict(),
                "equal": a is not None and a.digest == b.digest,
            }
        )
    return {
        "target": "neo4j",
        "into": into,
        "topic": settings.kafka.topics.edges,
        "records": stats.records,
        "skipped_invalid": stats.skipped_invalid,
        "other_tenants": stats.other_tenants,
        "written": stats.written,
        "refused": stats.refused,
        "compare": list(names),
        "tenants": rows,
        "equal": all(r["equal"] for r in rows),
    }


def _print(result: dict[str, Any]) -> None:
    console = Console()
    console.print(
        f"replayed {result['records']:,} records of {result['topic']} into {result['into']} "
        f"{result['target']}: {result['written']:,} written, {result['refused']:,} refused, "
        f"{result['skipped_invalid']:,} invalid (dead-lettered at ingest) skipped"
    )
    a, b = result["compare"]
    table = Table("tenant", f"{a} (nodes/edges/tombstones)", f"{b} (nodes/edges/tombstones)", "equal")
    for row in result["tenants"]:
        cells = []
        for side in (row[a], row[b]):
            if side is None:
                cells.append("-")
            else:
                c = side["counts"]
                cells.append(f"{c['nodes']}/{c['edges']}/{c['tombstones']} {side['digest'][:12]}")
        table.add_row(row["tenant"], *cells, "yes" if row["equal"] else "no")
    console.print(table)
