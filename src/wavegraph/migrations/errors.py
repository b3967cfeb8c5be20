"""Errors raised by the migration runner; each message names the file (and statement) at fault."""

from __future__ import annotations

from wavegraph.errors import WavegraphError


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
    ) -> None:
        self.script = script
        self.reason = reason
        self.statement = statement
        self.before = before
        self.after = after
        self.rollback = rollback
        self.undo_errors = undo_errors or []
        restored = "restored" if self.restored else "NOT restored"
        lines = [f"{script} failed: {reason}"]
        if statement is not None:
            lines.append(f"failing statement:\n{statement}")
        lines.append(
            f"rollback: {rollback}; content checksum {restored} (before {before[:12]}, after {after[:12]})"
        )
        lines.extend(f"undo error: {e}" for e in self.undo_errors)
        super().__init__("\n".join(lines))

    @property
    def restored(self) -> bool:
        return self.before == self.after
