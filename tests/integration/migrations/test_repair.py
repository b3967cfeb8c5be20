"""Undo scripts that fail, on the throwaway Neo4j and PostgreSQL: the history records the migration as
failed (never as applied), apply and rollback refuse to run over it naming the repair command, and
``migrate repair`` (after the database was fixed by hand) lets apply run again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import orjson
import pytest
from typer.testing import CliRunner

from wavegraph.clients import neo4j_driver
from wavegraph.commands.migrate import app
from wavegraph.migrations import MigrationError, MigrationFailed, RepairNeeded, api
from wavegraph.migrations.graph_snapshot import graph_checksum
from wavegraph.migrations.model import Db, HistoryEntry
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

# V1 fails at its third statement after two committed ones; its undo cannot drop an index that is not
# there (no IF EXISTS), so the index it should have dropped stays: content NOT restored.
HALF_V = """
CREATE INDEX t_half IF NOT EXISTS FOR (n:Node) ON (n.name);
MATCH (n:Node) SET n.touched = true;
MATCH (n:Node) WITH n LIMIT 1 RETURN n.seq / 0 AS boom;
"""
HALF_U = "MATCH (n:Node) REMOVE n.touched;\nDROP INDEX t_missing;\n"
# V1 applies cleanly; its undo commits its first statement and fails at the second.
FLAG_V = "CREATE INDEX t_flag IF NOT EXISTS FOR (n:Thing) ON (n.k);\nMATCH (n:Node) SET n.flag = 1;\n"
FLAG_U = "MATCH (n:Node) REMOVE n.flag;\nDROP INDEX t_flag_typo;\n"
THINGS_V = "CREATE TABLE things (k int PRIMARY KEY);\nINSERT INTO things VALUES (1), (2);\n"
THINGS_U = "DELETE FROM things;\nDROP TABLE thingz;\n"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


async def _seed(s: Settings) -> None:
    driver = neo4j_driver(s.neo4j, retries=True)
    try:
        await driver.execute_query(
            "UNWIND range(1, 10) AS i CREATE (:Node {tenant: 't', id: 'n' + i, seq: i})"
        )
    finally:
        await driver.close()


async def _history(s: Settings, db: Db) -> list[HistoryEntry]:
    async with api.open_target(s, db) as target:
        return await target.history()


async def _states(s: Settings, tree: Path, db: Db) -> dict[str, str]:
    return {r.version: r.state for r in await api.info(s, tree, dbs=(db,))}


async def _neo4j_checksum(s: Settings) -> str:
    driver = neo4j_driver(s.neo4j, retries=True)
    try:
        return await graph_checksum(driver)
    finally:
        await driver.close()


async def test_failing_automatic_undo_is_recorded_as_failed_and_blocks_apply(
    neo4j_scratch: Settings, tmp_path: Path
) -> None:
    tree = _write(tmp_path, {"neo4j/V1__half.cypher": HALF_V, "neo4j/U1__half.cypher": HALF_U})
    await _seed(neo4j_scratch)
    with pytest.raises(MigrationFailed) as failure:
        await api.apply(neo4j_scratch, tree, dbs=("neo4j",))
    exc = failure.value
    assert not exc.restored
    [undo_error] = exc.undo_errors
    assert "DROP INDEX t_missing" in undo_error
    assert f"wavegraph migrate repair --db neo4j --target 1 --location {tree}" in str(exc)

    [entry] = await _history(neo4j_scratch, "neo4j")
    assert (entry.version, entry.success, entry.state) == ("1", False, "failed")
    assert entry.error is not None and "undo error: DROP INDEX t_missing" in entry.error
    assert await _states(neo4j_scratch, tree, "neo4j") == {"1": "failed"}
    [problem] = await api.validate(neo4j_scratch, tree, dbs=("neo4j",))
    assert "V1__half.cypher (version 1) on neo4j" in problem and "recorded as failed" in problem

    checksum = await _neo4j_checksum(neo4j_scratch)
    with pytest.raises(RepairNeeded) as refused:
        await api.apply(neo4j_scratch, tree, dbs=("neo4j",))
    assert str(refused.value) == (
        f"refusing to apply: migration V1__half.cypher (version 1) on neo4j at {neo4j_scratch.neo4j.uri} is "
        "recorded as failed (see `wavegraph migrate info --db neo4j`); fix the database by hand, then run "
        f"`wavegraph migrate repair --db neo4j --target 1 --location {tree}`."
    )
    with pytest.raises(RepairNeeded, match=r"^refusing to roll back: migration V1__half\.cypher"):
        await api.rollback(neo4j_scratch, "0", tree, dbs=("neo4j",))
    assert len(await _history(neo4j_scratch, "neo4j")) == 1  # the refusals recorded nothing ...
    assert await _neo4j_checksum(neo4j_scratch) == checksum  # ... and ran nothing

    # repair runs nothing in the database: unfixed, the index the undo left is still there, and the
    # report warns that the content differs from before the migration
    [report] = await api.repair(neo4j_scratch, None, tree, dbs=("neo4j",))
    assert (report.action, report.version, report.script) == ("repair", "1", "V1__half.cypher")
    assert report.error is not None and "differs" in report.error
    assert await _neo4j_checksum(neo4j_scratch) == checksum
    assert [e.state for e in await _history(neo4j_scratch, "neo4j")] == ["failed", "repaired"]
    assert await _states(neo4j_scratch, tree, "neo4j") == {"1": "repaired"}


async def test_an_undo_error_is_failed_even_when_the_content_checksum_is_back(
    neo4j_scratch: Settings, tmp_path: Path
) -> None:
    """The checksum cannot tell what a failed undo statement should have done: a human must look."""
    undo = "MATCH (n:Node) REMOVE n.touched;\nDROP INDEX t_half;\nDROP INDEX t_missing;\n"
    tree = _write(tmp_path, {"neo4j/V1__half.cypher": HALF_V, "neo4j/U1__half.cypher": undo})
    await _seed(neo4j_scratch)
    with pytest.raises(MigrationFailed) as failure:
        await api.apply(neo4j_scratch, tree, dbs=("neo4j",))
    assert failure.value.restored and len(failure.value.undo_errors) == 1
    assert await _states(neo4j_scratch, tree, "neo4j") == {"1": "failed"}
    with pytest.raises(RepairNeeded):
        await api.apply(neo4j_scratch, tree, dbs=("neo4j",))


def test_failing_rollback_on_neo4j_then_cli_refuses_until_repair(
    neo4j_scratch: Settings, cli_env: Settings, tmp_path: Path
) -> None:
    tree = _write(tmp_path, {"neo4j/V1__flag.cypher": FLAG_V, "neo4j/U1__flag.cypher": FLAG_U})
    asyncio.run(_seed(neo4j_scratch))
    before = asyncio.run(_neo4j_checksum(neo4j_scratch))
    runner = CliRunner()
    where = ["--db", "neo4j", "--location", str(tree)]
    assert runner.invoke(app, ["apply", *where]).exit_code == 0

    result = runner.invoke(app, ["rollback", "--target", "0", *where])
    assert result.exit_code == 1, result.output
    assert "U1__flag.cypher failed" in result.output and "DROP INDEX t_flag_typo" in result.output
    # the first undo statement committed: recorded as failed, not left as applied
    assert asyncio.run(_states(neo4j_scratch, tree, "neo4j")) == {"1": "failed"}
    undo = asyncio.run(_history(neo4j_scratch, "neo4j"))[-1]
    assert (undo.type, undo.success, undo.state) == ("UNDO_CYPHER", False, "failed")
    assert undo.error is not None and "statement: DROP INDEX t_flag_typo" in undo.error
    result = runner.invoke(app, ["info", *where])
    assert result.exit_code == 0, result.output
    assert "neo4j U1__flag.cypher failed:" in result.output
    assert "statement: DROP INDEX t_flag_typo" in result.output

    command = f"wavegraph migrate repair --db neo4j --target 1 --location {tree}"
    result = runner.invoke(app, ["apply", *where])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "refusing to apply: migration U1__flag.cypher (version 1) on neo4j" in result.output
    assert f"then run `{command}`." in result.output
    result = runner.invoke(app, ["apply", "--json", *where])
    assert result.exit_code == 1
    data = orjson.loads(result.stdout)
    assert (data["ok"], data["command"], data["failed"][0]["state"]) == (False, command, "failed")

    asyncio.run(_drop_neo4j_index(neo4j_scratch, "t_flag"))  # the operator finishes the undo by hand
    assert asyncio.run(_neo4j_checksum(neo4j_scratch)) == before
    result = runner.invoke(app, ["repair", "--target", "1", "--json", *where])
    assert result.exit_code == 0, result.output
    [report] = orjson.loads(result.stdout)
    assert (report["action"], report["version"], report["error"]) == ("repair", "1", None)
    history = asyncio.run(_history(neo4j_scratch, "neo4j"))
    assert [(e.type, e.state) for e in history] == [
        ("CYPHER", "success"),
        ("UNDO_CYPHER", "failed"),  # kept: the audit trail
        ("REPAIR_CYPHER", "repaired"),
    ]

    result = runner.invoke(app, ["apply", *where])
    assert result.exit_code == 0, result.output
    assert asyncio.run(_states(neo4j_scratch, tree, "neo4j")) == {"1": "success"}
    assert asyncio.run(_count(neo4j_scratch, "MATCH (n:Node) WHERE n.flag = 1 RETURN count(n)")) == 10
    result = runner.invoke(app, ["repair", "--target", "1", *where])
    assert result.exit_code == 1  # nothing failed any more: an explicit --target is refused, clearly
    assert "nothing to repair: version 1 is not recorded as failed on neo4j" in result.output


async def test_failing_postgres_undo_outside_a_transaction_is_recorded_and_repaired(
    pg_scratch: Settings, tmp_path: Path
) -> None:
    tree = _write(
        tmp_path,
        {
            "postgres/V1__things.sql": THINGS_V,
            "postgres/V1__things.sql.conf": "executeInTransaction=false\n",
            "postgres/U1__things.sql": THINGS_U,
        },
    )
    await api.apply(pg_scratch, tree, dbs=("postgres",))
    with pytest.raises(MigrationFailed, match="thingz") as failure:
        await api.rollback(pg_scratch, "0", tree, dbs=("postgres",))
    assert "stay committed" in failure.value.rollback
    assert await _states(pg_scratch, tree, "postgres") == {"1": "failed"}
    assert await _rows(pg_scratch) == 0  # DELETE committed before DROP TABLE failed

    with pytest.raises(RepairNeeded) as refused:
        await api.apply(pg_scratch, tree, dbs=("postgres",))
    message = str(refused.value)
    assert message.startswith("refusing to apply: migration U1__things.sql (version 1) on postgres at ")
    assert message.endswith(f"`wavegraph migrate repair --db postgres --target 1 --location {tree}`.")

    await _execute(pg_scratch, "DROP TABLE things")  # the operator finishes the undo by hand
    [report] = await api.repair(pg_scratch, "1", tree, dbs=("postgres",))
    assert report.error is None  # content as it was before V1 was applied
    assert [r.version for r in await api.apply(pg_scratch, tree, dbs=("postgres",))] == ["1"]
    assert await _rows(pg_scratch) == 2
    assert await _states(pg_scratch, tree, "postgres") == {"1": "success"}
    assert [e.state for e in await _history(pg_scratch, "postgres")] == [
        "success",
        "failed",
        "repaired",
        "success",
    ]


async def test_failing_postgres_undo_in_a_transaction_leaves_the_migration_applied(
    pg_scratch: Settings, tmp_path: Path
) -> None:
    tree = _write(tmp_path, {"postgres/V1__things.sql": THINGS_V, "postgres/U1__things.sql": THINGS_U})
    await api.apply(pg_scratch, tree, dbs=("postgres",))
    with pytest.raises(MigrationFailed) as failure:
        await api.rollback(pg_scratch, "0", tree, dbs=("postgres",))
    assert failure.value.restored and "transaction was rolled back" in failure.value.rollback
    undo = (await _history(pg_scratch, "postgres"))[-1]
    assert (undo.type, undo.success, undo.state) == ("UNDO_SQL", False, "rolled back")
    assert await _rows(pg_scratch) == 2
    assert await _states(pg_scratch, tree, "postgres") == {"1": "undo rolled back"}
    assert await api.validate(pg_scratch, tree, dbs=("postgres",)) == []
    assert await api.apply(pg_scratch, tree, dbs=("postgres",)) == []  # still applied, not blocked
    with pytest.raises(MigrationError, match="nothing to repair: version 1 is not recorded as failed"):
        await api.repair(pg_scratch, "1", tree, dbs=("postgres",))


async def _drop_neo4j_index(s: Settings, name: str) -> None:
    driver = neo4j_driver(s.neo4j, retries=True)
    try:
        await driver.execute_query(f"DROP INDEX `{name}`")
    finally:
        await driver.close()


async def _count(s: Settings, query: str) -> int:
    driver = neo4j_driver(s.neo4j, retries=True)
    try:
        records, _, _ = await driver.execute_query(query)
        return int(records[0][0])
    finally:
        await driver.close()


async def _execute(s: Settings, sql: str) -> None:
    conn = await asyncpg.connect(s.postgres.url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _rows(s: Settings) -> int:
    conn = await asyncpg.connect(s.postgres.url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM things"))
    finally:
        await conn.close()
