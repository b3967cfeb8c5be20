"""``wavegraph migrate info | apply`` stay readable in an 80-column terminal, against the real databases:
no line is wider than the terminal, and each migration stays on one line (``--details`` may wrap)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from typer.testing import CliRunner

from wavegraph.cli import app
from wavegraph.migrations.scratch import scratch
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

NARROW = {"COLUMNS": "80"}


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").splitlines()


def test_migrate_info_fits_80_columns_one_line_per_migration(services: Settings) -> None:
    runner = CliRunner()
    rows = orjson.loads(runner.invoke(app, ["migrate", "info", "--json"]).stdout)
    assert len(rows) >= 10
    result = runner.invoke(app, ["migrate", "info"], env=NARROW)
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    for row in rows:  # db, version, description, state on the same line: the row did not wrap
        assert any(
            f" {row['db']} " in line
            and f" {row['version']} " in line
            and row["description"] in line
            and row["state"] in line
            for line in lines
        ), (row, result.stdout)
    assert rows[0]["checksum"][:12] not in result.stdout  # the checksum is a detail


def test_migrate_info_details_adds_script_and_checksum_within_80_columns(services: Settings) -> None:
    result = CliRunner().invoke(app, ["migrate", "info", "--details", "--db", "neo4j"], env=NARROW)
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert max(len(line) for line in lines) <= 80
    assert "checksum" in result.stdout and "script" in result.stdout
    wide = CliRunner().invoke(app, ["migrate", "info", "--details", "--db", "neo4j"], env={"COLUMNS": "200"})
    rows = orjson.loads(CliRunner().invoke(app, ["migrate", "info", "--json", "--db", "neo4j"]).stdout)
    for row in rows:  # at 200 columns every detail is on its row's line, uncut
        assert any(row["script"] in line and row["checksum"][:12] in line for line in _lines(wide.stdout))


@pytest.fixture(scope="module")
def fresh_postgres(settings: Settings) -> Iterator[Settings]:
    """A throwaway PostgreSQL (no migration applied yet): the shared one has nothing pending."""
    import asyncio

    with asyncio.Runner() as runner:
        cm = scratch(settings, "postgres")
        local = runner.run(cm.__aenter__())
        try:
            yield local
        finally:
            runner.run(cm.__aexit__(None, None, None))


def test_migrate_apply_fits_80_columns_one_line_per_step(fresh_postgres: Settings) -> None:
    env = {**NARROW, "WAVEGRAPH_POSTGRES__PORT": str(fresh_postgres.postgres.port)}
    result = CliRunner().invoke(app, ["migrate", "apply", "--db", "postgres"], env=env)
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert max(len(line) for line in lines) <= 80, result.stdout
    info = orjson.loads(
        CliRunner().invoke(app, ["migrate", "info", "--json", "--db", "postgres"], env=env).stdout
    )
    assert len(info) >= 5 and {r["state"] for r in info} == {"success"}
    for row in info:
        assert any(f" {row['version']} " in line and row["description"] in line for line in lines), (
            result.stdout
        )
    with_checks = [line for line in lines if "✓" in line]  # the migrations that carry post-checks
    assert with_checks and all("node embeddings" in line for line in with_checks), result.stdout
    again = CliRunner().invoke(app, ["migrate", "apply", "--db", "postgres"], env=env)
    assert again.exit_code == 0 and "apply: nothing to do" in again.stdout
