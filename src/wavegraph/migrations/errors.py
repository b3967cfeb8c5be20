"""Errors raised by the migration runner; each message names the file (and statement) at fault."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from wavegraph.errors import WavegraphError
from wavegraph.migrations.model import HistoryEntry


class MigrationError(WavegraphError):
    """A migration tree or history problem: bad file name, unknown placeholder, missing undo script."""


class ValidationFailed(MigrationError):
    """Applied migrations no longer match their files (edited or deleted after they were applied)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("validation failed:\n  " + "\n  ".join(problems))
        self.problems = problems


class MigrationFailed(MigrationError):
    """A migration statement or post-check failed; the undo ran (or the transaction rolled back).

    ``restored`` tells whether the content checksum after the rollback equals the one before the
    migration started.
    """

    def __init__(
        self,
        script: str,
        reason: str,
        statement: str | None,
        before: str,
        after: str,
        rollback: str,
        undo_errors: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        self.script = script
        self.reason = reason
        self.statement = statement
        self.before = before
        self.after = after
        self.rollback = rollback
        self.undo_errors = undo_errors or []
        self.hint = hint
        restored = "restored" if self.restored else "NOT restored"
        lines = [f"{script} failed: {reason}"]
        if statement is not None:
            lines.append(f"failing statement:\n{statement}")
        lines.append(
            f"rollback: {rollback}; content checksum {restored} (before {before[:12]}, after {after[:12]})"
        )
        lines.extend(f"undo error: {e}" for e in self.undo_errors)
        if hint is not None:
            lines.append(hint)
        super().__init__("\n".join(lines))

    @property
    def restored(self) -> bool:
        return self.before == self.after


class RepairNeeded(MigrationError):
    """The target's history holds a ``failed`` migration: nothing runs on it until ``migrate repair``.

    ``str()`` is one sentence naming the migration, the database and the command to run.
    """

    def __init__(
        self, action: str, db: str, where: str, entries: Sequence[HistoryEntry], location: Path | None = None
    ) -> None:
        self.db = db
        self.where = where
        self.entries = list(entries)
        self.command = repair_command(
            db, self.entries[0].version if len(self.entries) == 1 else None, location
        )
        super().__init__(f"refusing to {action}: {failed_sentence(db, where, self.entries, location)}")


def failed_sentence(
    db: str, where: str, entries: Sequence[HistoryEntry], location: Path | None = None
) -> str:
    """``migration <script> (version <v>) on <db> at <where> is recorded as failed ...; fix the database
    by hand, then run `wavegraph migrate repair ...`.`` (``--target`` only when there is one entry)."""
    one = len(entries) == 1
    command = repair_command(db, entries[0].version if one else None, location)
    names = ", ".join(f"{e.script} (version {e.version})" for e in entries)
    return (
        f"{'migration' if one else 'migrations'} {names} on {db} at {where} {'is' if one else 'are'} "
        f"recorded as failed (see `wavegraph migrate info --db {db}`); fix the database by hand, then run "
        f"`{command}`."
    )


def repair_command(db: str, version: str | None, location: Path | None = None) -> str:
    """The ``wavegraph migrate repair`` command line for ``db`` (one ``version``, or every failed one)."""
    words = ["wavegraph", "migrate", "repair", "--db", db]
    if version is not None:
        words += ["--target", version]
    if location is not None:
        words += ["--location", str(location)]
    return shlex.join(words)
