"""Checksums: editing an applied file fails validation naming it; applying twice is a no-op."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wavegraph.commands.migrate import app
from wavegraph.migrations import ValidationFailed, api
from wavegraph.migrations.discover import DEFAULT_LOCATION, discover, load_tree
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


async def test_edited_applied_file_fails_validation(pg_scratch: Settings, tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_LOCATION / "postgres", tmp_path / "postgres")
    expected = [m.version for m in discover(load_tree(tmp_path, pg_scratch), "postgres")]
    assert [r.version for r in await api.apply(pg_scratch, tmp_path, dbs=("postgres",))] == expected
    assert await api.validate(pg_scratch, tmp_path, dbs=("postgres",)) == []

    edited = tmp_path / "postgres" / "V2025.05.3__embeddings.sql"
    edited.write_text(edited.read_text() + "\n-- a harmless-looking edit\n")
    [problem] = await api.validate(pg_scratch, tmp_path, dbs=("postgres",))
    assert str(edited) in problem
    with pytest.raises(ValidationFailed, match=r"V2025\.05\.3__embeddings\.sql"):
        await api.apply(pg_scratch, tmp_path, dbs=("postgres",))


def test_cli_validate_names_the_edited_file(pg_scratch: Settings, cli_env: Settings, tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_LOCATION / "postgres", tmp_path / "postgres")
    runner = CliRunner()
    location = ["--db", "postgres", "--location", str(tmp_path)]
    assert runner.invoke(app, ["apply", *location]).exit_code == 0
    assert runner.invoke(app, ["validate", *location]).exit_code == 0
    edited = tmp_path / "postgres" / "V2025.08__dp_budget.sql"
    edited.write_text(edited.read_text().replace("numeric", "double precision"))
    result = runner.invoke(app, ["validate", *location])
    assert result.exit_code == 1
    assert "V2025.08__dp_budget.sql" in result.output


async def test_apply_twice_is_a_no_op(pg_scratch: Settings) -> None:
    first = await api.apply(pg_scratch, dbs=("postgres",))
    expected = [m.version for m in discover(load_tree(DEFAULT_LOCATION, pg_scratch), "postgres")]
    assert [r.version for r in first] == expected
    assert {"2025.05.1", "2025.05.2", "2025.05.3", "2025.07", "2025.08"} <= set(expected)
    assert await api.apply(pg_scratch, dbs=("postgres",)) == []
    rows = await api.info(pg_scratch, dbs=("postgres",))
    assert {r.state for r in rows} == {"success"}
    assert all(r.after_checksum for r in rows)
