"""Settings-level entry points used by the CLI, the tests and other packages' fixtures.

Every function takes the :class:`~wavegraph.settings.Settings`, the migration tree ``location``
(default ``migrations/``) and the databases to act on (``neo4j``, ``postgres``; default both).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from wavegraph.migrations.discover import discover, load_tree
from wavegraph.migrations.errors import MigrationError, failed_sentence
from wavegraph.migrations.history import InfoRow, failed, info_rows, problems
from wavegraph.migrations.model import DBS, Db, StepReport
from wavegraph.migrations.neo4j_target import Neo4jTarget
from wavegraph.migrations.postgres_target import PostgresTarget
from wavegraph.migrations.repair import repair as repair_target
from wavegraph.migrations.runner import apply as apply_target
from wavegraph.migrations.runner import rollback as rollback_target
from wavegraph.migrations.runner import version_arg
from wavegraph.migrations.target import Target
from wavegraph.settings import Settings


def open_target(settings: Settings, db: Db) -> Target:
    """An unopened target for ``db`` as configured by ``settings`` (use with ``async with``)."""
    return Neo4jTarget(settings.neo4j) if db == "neo4j" else PostgresTarget(settings.postgres)


async def info(settings: Settings, location: Path | None = None, dbs: Sequence[Db] = DBS) -> list[InfoRow]:
    tree = load_tree(location, settings)
    rows: list[InfoRow] = []
    for db in dbs:
        async with open_target(settings, db) as target:
            rows.extend(info_rows(db, discover(tree, db), await target.history()))
    return rows


async def validate(settings: Settings, location: Path | None = None, dbs: Sequence[Db] = DBS) -> list[str]:
    """Every problem found (empty when valid), each naming its file: applied files edited or deleted
    since, and migrations recorded as failed (which block apply until ``repair``)."""
    tree = load_tree(location, settings)
    found: list[str] = []
    for db in dbs:
        async with open_target(settings, db) as target:
            history = await target.history()
            found.extend(problems(discover(tree, db), history))
            if blocked := failed(history):
                found.append(failed_sentence(db, target.where, blocked, location))
    return found


async def apply(
    settings: Settings, location: Path | None = None, dbs: Sequence[Db] = DBS
) -> list[StepReport]:
    """Apply every pending migration; raises ``ValidationFailed`` / ``MigrationFailed``, and
    ``RepairNeeded`` (before changing anything on that database) when its history holds a failed
    migration."""
    tree = load_tree(location, settings)
    reports: list[StepReport] = []
    for db in dbs:
        migrations = discover(tree, db)
        async with open_target(settings, db) as target:
            reports.extend(await apply_target(target, migrations, location=location))
    return reports


async def rollback(
    settings: Settings, to_version: str | None, location: Path | None = None, dbs: Sequence[Db] = DBS
) -> list[StepReport]:
    """Undo down to ``to_version`` (kept applied; ``"0"`` undoes all; ``None`` undoes the latest).

    A failing undo is recorded as failed and raises ``MigrationFailed``; a database whose history
    holds a failed migration raises ``RepairNeeded``.
    """
    tree = load_tree(location, settings)
    reports: list[StepReport] = []
    for db in dbs:
        migrations = discover(tree, db)
        async with open_target(settings, db) as target:
            reports.extend(await rollback_target(target, migrations, to_version, location=location))
    return reports


async def repair(
    settings: Settings, version: str | None = None, location: Path | None = None, dbs: Sequence[Db] = DBS
) -> list[StepReport]:
    """Mark the failed migrations of ``dbs`` (only ``version``, when given) as repaired; see
    :mod:`wavegraph.migrations.repair` for what that does and does not do.

    Raises ``MigrationError`` when ``version`` is given but is not recorded as failed on any of ``dbs``.
    """
    if version is not None:
        version_arg(version)  # a bad version is an error before any database is opened
    tree = load_tree(location, settings)
    reports: list[StepReport] = []
    for db in dbs:
        async with open_target(settings, db) as target:
            reports.extend(await repair_target(target, discover(tree, db), version))
    if version is not None and not reports:
        raise MigrationError(
            f"nothing to repair: version {version} is not recorded as failed on {', '.join(dbs)} "
            "(see `wavegraph migrate info`)"
        )
    return reports


def apply_all(settings: Settings, location: Path | None = None) -> list[StepReport]:
    """Apply every pending migration to the configured Neo4j and PostgreSQL (synchronous; for fixtures).

    Idempotent: returns an empty list when everything is applied already.
    """
    return asyncio.run(apply(settings, location))
