"""``wavegraph migrate info | validate | apply | dry-run | rollback | repair``: versioned Neo4j/PostgreSQL
schemas.

Exit codes: 0 success; 1 a migration or an undo failed, validation found edited files, or the database
holds a migration recorded as failed (``apply``/``rollback`` refuse until ``repair``). Errors are printed
as messages, never as tracebacks.

Tables fit an 80-column terminal: one line per migration with the columns an operator reads first;
``--details`` adds the script, checksums, snapshot times and every post-check (``--json``: all fields).
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
DetailsOpt = Annotated[
    bool, typer.Option("--details", help="Every column (script, checksums, snapshot ms, each check).")
]
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
def info(
    db: DbOpt = "all", location: LocationOpt = None, json: JsonOpt = False, details: DetailsOpt = False
) -> None:
    """Every migration with its version, description, install time and state (--details: its script,
    checksum and the install time to the second)."""
    from wavegraph.migrations import api

    rows = asyncio.run(api.info(_settings(), location, _dbs(db)))
    if json:
        _json([r.as_dict() for r in rows])
        return
    table = Table(title="wavegraph migrations")
    columns = ["db", "version", "script" if details else "description", "installed on", "state"]
    if details:
        columns[3:3] = ["checksum"]
    for column in columns:
        table.add_column(column, overflow="fold")  # --details in 80 columns: wrap, never cut
    colours = {
        "success": "green",
        "pending": "yellow",
        "undone": "yellow",
        "repaired": "yellow",
        "undo rolled back": "yellow",
        "rolled back": "red",
    }
    for r in rows:
        installed = (
            r.installed_on.strftime("%Y-%m-%d %H:%M:%S" if details else "%Y-%m-%d %H:%M")
            if r.installed_on
            else "-"
        )
        colour = colours.get(r.state, "bold red")
        cells = [
            r.db,
            r.version,
            escape(r.script if details else r.description),
            installed,
            f"[{colour}]{r.state}[/]",
        ]
        if details:
            cells[3:3] = [r.checksum[:12]]
        table.add_row(*cells)
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
def apply(
    db: DbOpt = "all", location: LocationOpt = None, json: JsonOpt = False, details: DetailsOpt = False
) -> None:
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
        _steps("apply", reports, details=details)


@app.command()
def rollback(
    target: Annotated[
        str | None,
        typer.Option("--target", help="Undo down to this version, which stays applied (0 undoes all)."),
    ] = None,
    db: DbOpt = "all",
    location: LocationOpt = None,
    json: JsonOpt = False,
    details: DetailsOpt = False,
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
        _steps("rollback", reports, details=details)


@app.command()
def repair(
    target: Annotated[
        str | None,
        typer.Option("--target", help="Repair only this version (default: every failed one)."),
    ] = None,
    db: DbOpt = "all",
    location: LocationOpt = None,
    json: JsonOpt = False,
    details: DetailsOpt = False,
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
        _steps("repair", reports, details=details)


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
    details: DetailsOpt = False,
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
            _steps(f"dry-run {r.db}", r.steps, console, details=details)
            if r.failure:
                console.print(f"[bold red]failed:[/] {r.failure}", soft_wrap=True)
            console.print(f"{r.db}: {'[green]ok[/]' if r.ok else '[red]FAILED[/]'} in {r.total_s:.1f} s")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _description(script: str) -> str:
    """``V2025.05__node_lookup_indexes.cypher`` → ``node lookup indexes`` (Flyway's naming)."""
    stem = script.split("__", 1)[-1].rsplit(".", 1)[0]
    return stem.replace("_", " ")


def _checks_summary(checks: list[Any]) -> str:
    if not checks:
        return "-"
    failed = sum(not c.ok for c in checks)
    return f"[green]✓ {len(checks)}[/]" if not failed else f"[red]✗ {failed} of {len(checks)}[/]"


def _steps(title: str, reports: list[Any], console: Console | None = None, *, details: bool = False) -> None:
    """One line per step (db, version, description, ms, checks) in 80 columns; ``details``: the
    script, snapshot time, each check and the content checksums before and after."""
    console = console or Console()
    if not reports:
        console.print(f"{title}: nothing to do")
        return
    table = Table(title=title)
    columns = (
        ("db", "version", "script", "ms", "snapshot ms", "checks", "before", "after")
        if details
        else ("db", "version", "description", "ms", "checks")
    )
    for column in columns:
        table.add_column(column, justify="right" if column.endswith("ms") else "left", overflow="fold")
    for r in reports:
        if details:
            checks = (
                "\n".join(escape(f"{'✓' if c.ok else '✗'} {c.name} = {c.value}") for c in r.checks) or "-"
            )
            table.add_row(
                r.db,
                r.version,
                escape(r.script),
                str(r.execution_ms),
                str(r.snapshot_ms),
                checks,
                r.before_checksum[:12],
                r.after_checksum[:12],
            )
        else:
            table.add_row(
                r.db,
                r.version,
                escape(_description(r.script)),
                str(r.execution_ms),
                _checks_summary(r.checks),
            )
    console.print(table)
    for r in reports:
        if not details:
            for c in r.checks:
                if not c.ok:
                    check = escape(f"{c.name} = {c.value}, expected {c.expected}")
                    console.print(f"[red]✗ {escape(r.script)}:[/] {check}", soft_wrap=True)
        if r.error:
            console.print(f"[yellow]{escape(r.script)}:[/] {escape(r.error)}", soft_wrap=True)


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
