"""info, validate, apply (with automatic rollback) and rollback over one :class:`~.target.Target`.

apply, per pending migration in version order:

1. content checksum *before*; the values of ``expect = "unchanged"`` post-checks;
2. every statement (PostgreSQL: in one transaction unless the script opts out; Neo4j: one auto-commit
   transaction each);
3. the post-checks; then the checksum *after* and a history entry with both checksums.

When a statement or a post-check fails, the transaction is rolled back (PostgreSQL) or the ``U`` script
runs (Neo4j, non-transactional PostgreSQL scripts); the checksum is taken again and compared with
*before*; a history entry records the failure and :class:`MigrationFailed` names the script, the
failing statement and the reason. The state is ``rolled back`` only when the content checksum is back
and the undo (if one ran) raised no error; otherwise ``failed``.

rollback runs the ``U`` scripts; an undo that fails is recorded too: ``rolled back`` when it ran in a
transaction that rolled back leaving the content unchanged (the version stays applied), ``failed``
otherwise (Neo4j, non-transactional PostgreSQL scripts: the statements before the failing one stay
committed).

A target whose history holds a ``failed`` entry is refused by apply and rollback
(:class:`~.errors.RepairNeeded`) until :func:`.repair.repair` has marked it repaired.
"""

from __future__ import annotations

import datetime as dt
import getpass
import time
from pathlib import Path
from typing import Any

from wavegraph.migrations.errors import (
    MigrationError,
    MigrationFailed,
    RepairNeeded,
    ValidationFailed,
    repair_command,
)
from wavegraph.migrations.expand import run_statement
from wavegraph.migrations.history import FAILED, ROLLED_BACK, applied, failed, problems
from wavegraph.migrations.model import CheckResult, HistoryEntry, Migration, StepReport, version_key
from wavegraph.migrations.target import Session, Target


async def validate(target: Target, migrations: list[Migration]) -> None:
    """Raise :class:`ValidationFailed` naming every edited or deleted applied migration."""
    found = problems(migrations, await target.history())
    if found:
        raise ValidationFailed(found)


async def apply(
    target: Target, migrations: list[Migration], *, location: Path | None = None
) -> list[StepReport]:
    """Validate, then apply every pending migration; return one report per migration applied.

    Raises :class:`RepairNeeded` (changing nothing) when the history holds a ``failed`` entry;
    ``location`` is only named in the ``migrate repair`` command that the messages suggest.
    """
    async with target.lock():
        history = await target.history()
        refuse_if_failed(target, history, "apply", location)
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
            reports.append(await _apply_one(target, m, migrations, rank, location))
        return reports


async def rollback(
    target: Target, migrations: list[Migration], to_version: str | None, *, location: Path | None = None
) -> list[StepReport]:
    """Undo applied migrations newer than ``to_version`` (``None``: only the latest), newest first.

    ``to_version = "0"`` undoes everything. Raises when a migration to undo has no ``U`` script, and
    :class:`RepairNeeded` (changing nothing) when the history holds a ``failed`` entry.
    """
    floor = None if to_version is None else version_arg(to_version)
    async with target.lock():
        history = await target.history()
        refuse_if_failed(target, history, "roll back", location)
        done = applied(history)
        files = {m.key: m for m in migrations}
        if floor is None:
            keys = sorted(done)[-1:]
        else:
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
            reports.append(await _undo_one(target, m, migrations, rank, done[key], location))
        return reports


def refuse_if_failed(
    target: Target, history: list[HistoryEntry], action: str, location: Path | None = None
) -> None:
    """Raise :class:`RepairNeeded` naming the failed migrations when the history holds any."""
    blocked = failed(history)
    if blocked:
        raise RepairNeeded(action, target.db, target.where, blocked, location)


def version_arg(text: str) -> tuple[int, ...]:
    """A version given by the user (``2025.07``, ``2025_7``, ``0``), or a :class:`MigrationError`."""
    try:
        return version_key(text.strip())
    except ValueError:
        raise MigrationError(
            f"not a version: {text!r} (expected integers separated by '.' or '_', e.g. 2025.07)"
        ) from None


async def _apply_one(
    target: Target, m: Migration, migrations: list[Migration], rank: int, location: Path | None
) -> StepReport:
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
            bad = [c for c in checks if not c.ok]
            if bad:
                raise _ChecksFailed(bad)
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
        state = ROLLED_BACK if after == before and not undo_errors else FAILED
        error = _error_text(reason, statement, undo_errors)
        await target.record(_entry(target, m, rank, execution_ms, False, state, before, after, error))
        hint = _hint(target, m.script, m.version, location) if state == FAILED else None
        raise MigrationFailed(str(m.path), reason, statement, before, after, how, undo_errors, hint) from exc
    return StepReport(
        target.db, m.version, m.script, "apply", True, execution_ms, before, after, snapshot_ms, checks
    )


async def _undo_one(
    target: Target,
    m: Migration,
    migrations: list[Migration],
    rank: int,
    applied_entry: HistoryEntry,
    location: Path | None,
) -> StepReport:
    assert m.undo_path is not None
    before = await target.content_checksum(migrations)
    start = time.perf_counter()
    statement: str | None = None
    atomic = m.in_transaction
    try:
        async with target.session(atomic=m.in_transaction) as session:
            atomic = session.atomic
            for statement in m.undo_statements:
                await run_statement(session, statement)
            execution_ms = _ms(start)
            after = await target.content_checksum(migrations)
            entry = _entry(target, m, rank, execution_ms, True, "undone", before, after, undo=True)
            await target.record(entry)
    except Exception as exc:
        execution_ms = _ms(start)
        reason = _reason(exc)
        after = await target.content_checksum(migrations)
        state = ROLLED_BACK if atomic and after == before else FAILED
        error = _error_text(reason, statement, [])
        await target.record(
            _entry(target, m, rank, execution_ms, False, state, before, after, error, undo=True)
        )
        if state == ROLLED_BACK:
            how, hint = "the undo's transaction was rolled back (the migration stays applied)", None
        else:
            how = "undo stopped at the failing statement (the statements before it stay committed)"
            hint = _hint(target, m.undo_path.name, m.version, location)
        raise MigrationFailed(str(m.undo_path), reason, statement, before, after, how, hint=hint) from exc
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


def _error_text(reason: str, statement: str | None, undo_errors: list[str]) -> str:
    """The ``error`` of a history entry: the reason, the failing statement, every undo error."""
    lines = [reason]
    if statement is not None:
        lines.append(f"statement: {statement}")
    lines.extend(f"undo error: {e}" for e in undo_errors)
    return "\n".join(lines)


def _hint(target: Target, script: str, version: str, location: Path | None) -> str:
    command = repair_command(target.db, version, location)
    return (
        f"the history records {script} as failed, so apply and rollback refuse to run on {target.db} "
        f"until the database has been fixed by hand and `{command}` has been run"
    )


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
        installed_by=current_user(),
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


def current_user() -> str:
    """The operating-system user, recorded as ``installed_by`` (``unknown`` when it cannot be told)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _ms(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)
