"""``wavegraph migrate repair --help`` says what repair does and does not do; bad input is refused
before any database is opened."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from wavegraph.commands.migrate import app


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


def test_repair_help_describes_the_contract() -> None:
    result = CliRunner().invoke(app, ["repair", "--help"])
    assert result.exit_code == 0, result.output
    text = _plain(result.output)
    assert "Repair runs nothing in the database: it undoes nothing and finishes nothing." in text
    assert "the failed entry stays, for the audit trail" in text
    for option in ("--target", "--db", "--location", "--json"):
        assert option in text


def test_migrate_help_lists_repair() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "repair" in result.output


def test_repair_rejects_a_malformed_version_without_a_traceback() -> None:
    result = CliRunner().invoke(app, ["repair", "--db", "neo4j", "--target", "2025.x"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "not a version: '2025.x'" in result.output
