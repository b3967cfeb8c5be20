"""info, validate, apply (with automatic rollback) and rollback over one :class:`~.target.Target`.

apply, per pending migration in version order:

1. content checksum *before*; the values of ``expect = "unchanged"`` post-checks;
2. every statement (PostgreSQL: in one transaction unless the script opts out; Neo4j: one auto-commit
   transaction each);
3. the post-checks; then the checksum *after* and a history entry with both checksums.

When a statement or a post-check fails, the transaction is rolled back (PostgreSQL) or the ``U`` script
runs (Neo4j, non-transactional PostgreSQL scripts); the checksum is taken again and compared with
*before*; a history entry records the failure (state ``rolled back`` when they match, ``failed`` when
not) and :class:`MigrationFailed` names the script, the failing statement and the reason.
"""

from __future__ import annotations

import datetime as dt
import getpass
import time
from typing import Any

from wavegraph.migrations.errors import MigrationError, MigrationFailed, ValidationFailed
from wavegraph.migrations.expand import run_statement
from wavegraph.migrations.history import applied, problems
from wavegraph.migrations.model import CheckResult, HistoryEntry, Migration, StepReport, version_key
from wavegraph.migrations.target import Session, Target


async def validate(target: Target, migrations: list[Migration]) -> None:
    """Raise :class:`ValidationFailed` naming every edited or deleted applied migration."""
    found = problems(migrations, await target.history())
    if found:
        raise ValidationFailed(found)


async def apply(target: Target, migrations: list[Migration]) -> list[StepReport]:
    """Validate, then apply every pending migration; return one report per migration applied."""
    async with target.lock():
        history = await target.history()
        found = problems(migrations, history)
        if found:
            raise ValidationFailed(found)
        done = applied(history)
        rank = max((e.installed_rank for e in history), default=0)
        reports = []
        for m in migrations:
            if m.key in done:
                continue
            rank += 1
            reports.append(await _apply_one(target, m, migrations, rank))
        return reports


async def rollback(target: Target, migrations: list[Migration], to_version: str | None) -> list[StepReport]:
    """Undo applied migrations newer than ``to_version`` (``None``: only the latest), newest first.

    ``to_version = "0"`` undoes everything. Raises when a migration to undo has no ``U`` script.
    """
    async with target.lock():
        history = await target.history()
        done = applied(history)
        files = {m.key: m for m in migrations}
        if to_version is None:
            keys = sorted(done)[-1:]
        else:
            floor = version_key(to_version)
            keys = [k for k in done if k > floor]
        rank = max((e.installed_rank for e in history), default=0)
        reports = []
        for key in sorted(keys, reverse=True):
            m = files.get(key)
            if m is None:
                raise MigrationError(f"{done[key].script}: cannot undo, the file is gone")
            if m.undo_path is None:
                raise MigrationError(f"{m.path}: cannot undo, there is no U{m.version}__*{m.path.suffix}")
            rank += 1
            reports.append(await _undo_one(target, m, migrations, rank, done[key]))
        return reports


async def _apply_one(target: Target, m: Migration, migrations: list[Migration], rank: int) -> StepReport:
    t0 = time.perf_counter()
    before = await target.content_checksum(migrations)
    async with target.session(atomic=False) as plain:
        baselines = {c.name: await plain.value(c.query) for c in m.checks if c.expect == "unchanged"}
    snapshot_ms = _ms(t0)
    start = time.perf_counter()
    statement: str | None = None
    checks: list[CheckResult] = []
    atomic = m.in_transaction
    try:
        async with target.session(atomic=m.in_transaction) as session:
            atomic = session.atomic
            for statement in m.statements:
                await run_statement(session, statement)
            statement = None
            checks = await _run_checks(session, m, baselines)
            failed = [c for c in checks if not c.ok]
            if failed:
                raise _ChecksFailed(failed)
            execution_ms = _ms(start)
            t1 = time.perf_counter()
            after = await target.content_checksum(migrations)
            snapshot_ms += _ms(t1)
            await target.record(_entry(target, m, rank, execution_ms, True, "success", before, after))
    except Exception as exc:
        execution_ms = _ms(start)
        reason = _reason(exc)
        undo_errors: list[str] = []
        if atomic:
            how = "the transaction was rolled back"
        else:
            how, undo_errors = await _run_undo(target, m)
        after = await target.content_checksum(migrations)
        state = "rolled back" if after == before else "failed"
        error = reason if statement is None else f"{reason}\nstatement: {statement}"
        await target.record(_entry(target, m, rank, execution_ms, False, state, before, after, error))
        raise MigrationFailed(str(m.path), reason, statement, before, after, how, undo_errors) from exc
    return StepReport(
        target.db, m.version, m.script, "apply", True, execution_ms, before, after, snapshot_ms, checks
    )


async def _undo_one(
    target: Target, m: Migration, migrations: list[Migration], rank: int, applied_entry: HistoryEntry
) -> StepReport:
    assert m.undo_path is not None
    before = await target.content_checksum(migrations)
    start = time.perf_counter()
    statement: str | None = None
    try:
        async with target.session(atomic=m.in_transaction) as session:
            for statement in m.undo_statements:
                await run_statement(session, statement)
            execution_ms = _ms(start)
            after = await target.content_checksum(migrations)
            entry = _entry(target, m, rank, execution_ms, True, "undone", before, after, undo=True)
            await target.record(entry)
    except Exception as exc:
        after = await target.content_checksum(migrations)
        raise MigrationFailed(
            str(m.undo_path), _reason(exc), statement, before, after, "undo stopped at the failing statement"
        ) from exc
    restored = "" if after == applied_entry.before_checksum else "content differs from before the apply"
    return StepReport(
        target.db,
        m.version,
        m.undo_path.name,
        "undo",
        True,
        execution_ms,
        before,
        after,
        error=restored or None,
    )


async def _run_undo(target: Target, m: Migration) -> tuple[str, list[str]]:
    if m.undo_path is None:
        return f"no undo script for {m.script}", []
    errors = []
    async with target.session(atomic=False) as session:
        for statement in m.undo_statements:
            try:
                await run_statement(session, statement)
            except Exception as exc:  # keep undoing: undo scripts are written to tolerate partial applies
                errors.append(f"{statement.splitlines()[0]} …: {_reason(exc)}")
    return f"{m.undo_path.name} ran", errors


async def _run_checks(session: Session, m: Migration, baselines: dict[str, Any]) -> list[CheckResult]:
    results = []
    for c in m.checks:
        expected = baselines[c.name] if c.expect == "unchanged" else c.expect
        value = await session.value(c.query)
        results.append(CheckResult(c.name, value, expected, value == expected))
    return results


class _ChecksFailed(Exception):
    def __init__(self, failed: list[CheckResult]) -> None:
        super().__init__(
            "post-check failed: "
            + "; ".join(f"{c.name}: got {c.value!r}, expected {c.expected!r}" for c in failed)
        )


def _entry(
    target: Target,
    m: Migration,
    rank: int,
    execution_ms: int,
    success: bool,
    state: str,
    before: str,
    after: str,
    error: str | None = None,
    undo: bool = False,
) -> HistoryEntry:
    assert m.undo_path is not None or not undo
    return HistoryEntry(
        installed_rank=rank,
        version=m.version,
        description=m.description,
        type=("UNDO_" if undo else "") + target.history_type,
        script=m.undo_path.name if undo and m.undo_path else m.script,
        checksum=m.checksum,
        installed_by=_user(),
        installed_on=dt.datetime.now(dt.UTC),
        execution_ms=execution_ms,
        success=success,
        state=state,
        before_checksum=before,
        after_checksum=after,
        error=error,
    )


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}".strip()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _ms(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)
