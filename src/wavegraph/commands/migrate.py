"""``wavegraph migrate info | validate | apply | dry-run | rollback | repair``: versioned Neo4j/PostgreSQL
schemas.

Exit codes: 0 success; 1 a migration or an undo failed, validation found edited files, or the database
holds a migration recorded as failed (``apply``/``rollback`` refuse until ``repair``). Errors are printed
as messages, never as tracebacks.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Schema migrations for Neo4j and PostgreSQL (Flyway conventions, checksummed, auto-rollback).",
    no_args_is_help=True,
)

DbOpt = Annotated[
    Literal["neo4j", "postgres", "all"], typer.Option("--db", help="Which database (default: both).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LocationOpt = Annotated[
    Path | None,
    typer.Option("--location", help="A flyway.toml, or a directory with one or with neo4j/ and postgres/."),
]


def _dbs(db: str) -> tuple[Any, ...]:
    return ("neo4j", "postgres") if db == "all" else (db,)


def _settings() -> Any:
    from wavegraph.settings import load_settings

    return load_settings()


def _json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


@app.command()
def info(db: DbOpt = "all", location: LocationOpt = None, json: JsonOpt = False) -> None:
    """Every migration with its version, description, checksum, install time and state."""
    from wavegraph.migrations import api

    rows = asyncio.run(api.info(_settings(), location, _dbs(db)))
    if json:
        _json([r.as_dict() for r in rows])
        return
    table = Table(title="wavegraph migrations")
    for column in ("db", "version", "description", "checksum", "installed on", "state"):
        table.add_column(column)
    colours = {
        "success": "green",
        "pending": "yellow",
        "undone": "yellow",
        "repaired": "yellow",
        "undo rolled back": "yellow",
        "rolled back": "red",
    }
    for r in rows:
        installed = r.installed_on.strftime("%Y-%m-%d %H:%M:%S") if r.installed_on else "-"
        colour = colours.get(r.state, "bold red")
        table.add_row(r.db, r.version, r.description, r.checksum[:12], installed, f"[{colour}]{r.state}[/]")
    console = Console()
    console.print(table)
    for r in rows:
        if r.state == "failed" and r.error:
            console.print(f"[bold red]{escape(f'{r.db} {r.script}')} failed:[/]", soft_wrap=True)
            console.print(r.error, soft_wrap=True, markup=False, highlight=False)


@app.command()
def validate(db: DbOpt = "all", location: LocationOpt = None, json: JsonOpt = False) -> None:
    """Fail (exit 1), naming each file, when an applied migration was edited or deleted afterwards, or
    when a migration is recorded as failed (see `migrate repair`)."""
    from wavegraph.migrations import api

    found = asyncio.run(api.validate(_settings(), location, _dbs(db)))
    if json:
        _json({"ok": not found, "problems": found})
    elif found:
        err = Console(stderr=True)
        for problem in found:
            err.print(f"[bold red]invalid:[/] {problem}", soft_wrap=True)
    else:
        Console().print("[green]valid:[/] every applied migration matches its file")
    if found:
        raise typer.Exit(1)


@app.command()
def apply(db: DbOpt = "all", location: LocationOpt = None, json: JsonOpt = False) -> None:
    """Apply every pending migration; a failure is rolled back automatically (exit 1).

    Refuses (exit 1, nothing changed) while a migration is recorded as failed: see `migrate repair`.
    """
    from wavegraph.migrations import MigrationError, api

    try:
        reports = asyncio.run(api.apply(_settings(), location, _dbs(db)))
    except MigrationError as exc:
        _fail(exc, json)
    if json:
        _json([r.as_dict() for r in reports])
    else:
        _steps("apply", reports)


@app.command()
def rollback(
    target: Annotated[
        str | None,
        typer.Option("--target", help="Undo down to this version, which stays applied (0 undoes all)."),
    ] = None,
    db: DbOpt = "all",
    location: LocationOpt = None,
    json: JsonOpt = False,
) -> None:
    """Run the U scripts of the migrations newer than --target (default: the latest one), newest first.

    An undo that fails is recorded as failed (exit 1); refuses while a migration is recorded as failed.
    """
    from wavegraph.migrations import MigrationError, api

    try:
        reports = asyncio.run(api.rollback(_settings(), target, location, _dbs(db)))
    except MigrationError as exc:
        _fail(exc, json)
    if json:
        _json([r.as_dict() for r in reports])
    else:
        _steps("rollback", reports)


@app.command()
def repair(
    target: Annotated[
        str | None,
        typer.Option("--target", help="Repair only this version (default: every failed one)."),
    ] = None,
    db: DbOpt = "all",
    location: LocationOpt = None,
    json: JsonOpt = False,
) -> None:
    """Mark migrations recorded as failed as repaired, after you fixed the database by hand.

    A migration is recorded as failed when its automatic undo, or an explicit rollback, could not
    bring the database back; apply and rollback then refuse to run. Repair runs nothing in the
    database: it undoes nothing and finishes nothing. First bring the database back to its state
    from before that migration (revert what the failed apply did, or finish the failed undo); then
    repair appends a 'repaired' entry to the history (the failed entry stays, for the audit trail)
    and the version counts as pending: the next apply runs it again. Exit 1 when --target is not
    recorded as failed.
    """
    from wavegraph.migrations import MigrationError, api

    try:
        reports = asyncio.run(api.repair(_settings(), target, location, _dbs(db)))
    except MigrationError as exc:
        _fail(exc, json)
    if json:
        _json([r.as_dict() for r in reports])
    else:
        _steps("repair", reports)


@app.command("dry-run")
def dry_run(
    db: DbOpt = "all",
    location: LocationOpt = None,
    sample: Annotated[
        str | None,
        typer.Option(
            "--sample", help="Load a named sample (empty, duplicates) instead of a copy of the data."
        ),
    ] = None,
    sample_nodes: Annotated[int, typer.Option("--sample-nodes", min=10)] = 10_000,
    json: JsonOpt = False,
) -> None:
    """Apply every pending migration on a throwaway copy (own data dir and port); the target is untouched."""
    from wavegraph.migrations.dryrun import dry_run as run

    console = Console(stderr=json)
    with console.status("dry-run: starting throwaway instances ..."):
        reports = asyncio.run(run(_settings(), location, _dbs(db), sample, sample_nodes))
    if json:
        _json([r.as_dict() for r in reports])
    else:
        for r in reports:
            console.print(f"[bold]{r.db}[/]: {r.source}, loaded in {r.load_s:.1f} s {r.loaded}")
            _steps(f"dry-run {r.db}", r.steps, console)
            if r.failure:
                console.print(f"[bold red]failed:[/] {r.failure}", soft_wrap=True)
            console.print(f"{r.db}: {'[green]ok[/]' if r.ok else '[red]FAILED[/]'} in {r.total_s:.1f} s")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _steps(title: str, reports: list[Any], console: Console | None = None) -> None:
    console = console or Console()
    if not reports:
        console.print(f"{title}: nothing to do")
        return
    table = Table(title=title)
    for column in ("db", "version", "script", "ms", "snapshot ms", "checks", "before", "after"):
        table.add_column(column, justify="right" if "ms" in column else "left")
    for r in reports:
        checks = "\n".join(f"{'✓' if c.ok else '✗'} {c.name} = {c.value}" for c in r.checks) or "-"
        table.add_row(
            r.db,
            r.version,
            r.script,
            str(r.execution_ms),
            str(r.snapshot_ms),
            checks,
            r.before_checksum[:12],
            r.after_checksum[:12],
        )
    console.print(table)
    for r in reports:
        if r.error:
            console.print(f"[yellow]{r.script}:[/] {r.error}")


def _fail(exc: Exception, json: bool) -> Any:
    from wavegraph.migrations import MigrationFailed, RepairNeeded

    if json:
        data: dict[str, Any] = {"ok": False, "error": str(exc)}
        if isinstance(exc, RepairNeeded):
            data.update(db=exc.db, command=exc.command, failed=[e.as_dict() for e in exc.entries])
        if isinstance(exc, MigrationFailed):
            data.update(
                script=exc.script,
                statement=exc.statement,
                reason=exc.reason,
                rollback=exc.rollback,
                before_checksum=exc.before,
                after_checksum=exc.after,
                restored=exc.restored,
                undo_errors=exc.undo_errors,
                hint=exc.hint,
            )
        _json(data)
    else:
        Console(stderr=True).print(
            f"[bold red]error:[/] {exc}", soft_wrap=True, markup=False, highlight=False
        )
    raise typer.Exit(1)
