"""A failing migration in a temporary tree: apply fails, the undo runs, the content checksum is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wavegraph.clients import neo4j_driver
from wavegraph.commands.migrate import app
from wavegraph.migrations import MigrationFailed, api
from wavegraph.migrations.graph_snapshot import graph_checksum
from wavegraph.migrations.samples import seed_duplicates
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

NEO4J_OK = "CREATE INDEX t_ok IF NOT EXISTS FOR (n:Thing) ON (n.k);\n"
NEO4J_BREAKS = """
CREATE INDEX t_broken IF NOT EXISTS FOR (n:Node) ON (n.name);
MATCH (n:Node) SET n.touched = true;
MATCH (n:Node) WITH n LIMIT 1 RETURN n.seq / 0 AS boom;
"""
NEO4J_BREAKS_UNDO = """
MATCH (n:Node) REMOVE n.touched;
DROP INDEX t_broken IF EXISTS;
"""
NEO4J_CHECKED = "MATCH (n:Node) SET n.flag = 1;\n"
NEO4J_CHECKED_UNDO = "MATCH (n:Node) REMOVE n.flag;\n"
NEO4J_CHECKS = """
[[check]]
name = "nothing flagged"
query = "MATCH (n:Node) WHERE n.flag = 1 RETURN count(n)"
expect = 0
"""


async def _seed(s: Settings) -> None:
    driver = neo4j_driver(s.neo4j, retries=True)
    try:
        await driver.execute_query(
            "UNWIND range(1, 10) AS i CREATE (:Node {tenant: 'cli', id: 'n' + i, seq: i})"
        )
    finally:
        await driver.close()


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


async def test_failing_statement_is_undone(neo4j_scratch: Settings, tmp_path: Path) -> None:
    tree = _write(
        tmp_path,
        {
            "neo4j/V1__ok.cypher": NEO4J_OK,
            "neo4j/U1__ok.cypher": "DROP INDEX t_ok IF EXISTS;\n",
            "neo4j/V2__breaks.cypher": NEO4J_BREAKS,
            "neo4j/U2__breaks.cypher": NEO4J_BREAKS_UNDO,
        },
    )
    driver = neo4j_driver(neo4j_scratch.neo4j, retries=True)
    try:
        await seed_duplicates(driver, tenant="t-fail", nodes=300)
        before = await graph_checksum(driver)
        with pytest.raises(MigrationFailed) as failure:
            await api.apply(neo4j_scratch, tree, dbs=("neo4j",))
        exc = failure.value
        assert exc.script.endswith("V2__breaks.cypher")
        assert exc.statement is not None and "n.seq / 0" in exc.statement
        assert "U2__breaks.cypher ran" in exc.rollback
        assert exc.restored
        # V1 stays applied (its index is part of the content), so compare from just before V2
        states = {r.version: r.state for r in await api.info(neo4j_scratch, tree, dbs=("neo4j",))}
        assert states == {"1": "success", "2": "rolled back"}
        await api.rollback(neo4j_scratch, "0", tree, dbs=("neo4j",))
        assert await graph_checksum(driver) == before
    finally:
        await driver.close()


async def test_failing_post_check_is_undone(neo4j_scratch: Settings, tmp_path: Path) -> None:
    tree = _write(
        tmp_path,
        {
            "neo4j/V1__checked.cypher": NEO4J_CHECKED,
            "neo4j/U1__checked.cypher": NEO4J_CHECKED_UNDO,
            "neo4j/V1__checked.checks.toml": NEO4J_CHECKS,
        },
    )
    driver = neo4j_driver(neo4j_scratch.neo4j, retries=True)
    try:
        await seed_duplicates(driver, tenant="t-check", nodes=200)
        before = await graph_checksum(driver)
        with pytest.raises(MigrationFailed) as failure:
            await api.apply(neo4j_scratch, tree, dbs=("neo4j",))
        assert "nothing flagged: got 200, expected 0" in failure.value.reason
        assert failure.value.before == before == await graph_checksum(driver)
    finally:
        await driver.close()


@pytest.mark.parametrize("in_transaction", [True, False])
async def test_failing_postgres_migration_leaves_nothing(
    pg_scratch: Settings, tmp_path: Path, in_transaction: bool
) -> None:
    files = {
        "postgres/V1__things.sql": "CREATE TABLE things (k int PRIMARY KEY);\nINSERT INTO things VALUES (1);",
        "postgres/V2__breaks.sql": (
            "CREATE TABLE broken (k int);\nINSERT INTO things VALUES (2);\nINSERT INTO things VALUES (1);\n"
        ),
        "postgres/U2__breaks.sql": "DELETE FROM things WHERE k = 2;\nDROP TABLE IF EXISTS broken;\n",
    }
    if not in_transaction:
        files["postgres/V2__breaks.sql.conf"] = "executeInTransaction=false\n"
    tree = _write(tmp_path, files)
    with pytest.raises(MigrationFailed) as failure:
        await api.apply(pg_scratch, tree, dbs=("postgres",))
    exc = failure.value
    assert exc.statement == "INSERT INTO things VALUES (1)"
    assert "UniqueViolationError" in exc.reason
    expected = "the transaction was rolled back" if in_transaction else "U2__breaks.sql ran"
    assert exc.rollback == expected
    assert exc.restored, exc


def test_cli_apply_reports_the_failing_statement(
    neo4j_scratch: Settings, cli_env: Settings, tmp_path: Path
) -> None:
    tree = _write(
        tmp_path,
        {"neo4j/V2__breaks.cypher": NEO4J_BREAKS, "neo4j/U2__breaks.cypher": NEO4J_BREAKS_UNDO},
    )
    asyncio.run(_seed(neo4j_scratch))
    result = CliRunner().invoke(app, ["apply", "--db", "neo4j", "--location", str(tree)])
    assert result.exit_code == 1, result.output
    assert "V2__breaks.cypher failed" in result.output
    assert "n.seq / 0" in result.output
    assert "content checksum restored" in result.output
