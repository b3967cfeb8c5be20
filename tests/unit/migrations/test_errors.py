"""The refusal message names the migration, the database and a repair command that can be pasted."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

from wavegraph.migrations.errors import RepairNeeded, repair_command
from wavegraph.migrations.model import HistoryEntry
from wavegraph.migrations.postgres_target import redact


def _failed(version: str, script: str) -> HistoryEntry:
    return HistoryEntry(
        installed_rank=3,
        version=version,
        description="x",
        type="UNDO_SQL",
        script=script,
        checksum="c",
        installed_by="tester",
        installed_on=dt.datetime(2025, 7, 1, tzinfo=dt.UTC),
        execution_ms=1,
        success=False,
        state="failed",
        before_checksum="b",
        after_checksum="a",
        error="boom",
    )


def test_one_failed_migration_is_named_with_its_version_and_command() -> None:
    exc = RepairNeeded("apply", "postgres", "postgresql://u@h:1/db", [_failed("2025.07", "U2025.07__x.sql")])
    message = str(exc)
    assert message.startswith("refusing to apply: migration U2025.07__x.sql (version 2025.07) on postgres")
    assert "postgresql://u@h:1/db" in message
    assert message.endswith("then run `wavegraph migrate repair --db postgres --target 2025.07`.")
    assert "\n" not in message
    assert exc.command == "wavegraph migrate repair --db postgres --target 2025.07"


def test_several_failed_migrations_get_a_command_without_target() -> None:
    entries = [_failed("1", "V1__a.sql"), _failed("2", "V2__b.sql")]
    exc = RepairNeeded("roll back", "postgres", "here", entries, Path("my tree"))
    assert "migrations V1__a.sql (version 1), V2__b.sql (version 2) on postgres at here are" in str(exc)
    expected = ["wavegraph", "migrate", "repair", "--db", "postgres", "--location", "my tree"]
    assert shlex.split(exc.command) == expected


def test_repair_command_quotes_the_location() -> None:
    command = repair_command("neo4j", "1", Path("/tmp/a b"))
    assert shlex.split(command)[-2:] == ["--location", "/tmp/a b"]


def test_passwords_never_reach_a_message() -> None:
    assert redact("postgresql://u:s3cret@h:1/db") == "postgresql://u:***@h:1/db"
    assert redact("postgresql://u@h/db?sslmode=require&password=s3cret") == (
        "postgresql://u@h/db?sslmode=require&password=***"
    )
    assert redact("postgresql://u@h:5433/db") == "postgresql://u@h:5433/db"
