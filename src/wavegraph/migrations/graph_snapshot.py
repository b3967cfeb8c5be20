"""A Neo4j graph as a stream of chunks, and its content checksum.

:func:`export_chunks` streams every node with its labels, properties and outgoing relationships, one
record per ``batch`` nodes (the driver's per-record cost dominates otherwise: a row per relationship is
several times slower to receive than the same data in a few large records).

:func:`graph_checksum` is a sorted export hashed with sha256: one line per node (sorted labels +
properties), one per relationship (start node's line hash, type, end node's line hash, properties),
one per index and constraint (name, type, entity, labels/types, properties, options). Internal ids never
enter it, so a graph rebuilt by an undo hashes like the original. History nodes are left out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from neo4j import AsyncDriver

from wavegraph.migrations.canonical import canonical, digest, sorted_sections

HISTORY_LABEL = "__WavegraphMigration"
"""The label of the runner's history nodes."""
BATCH = 5_000

_EXPORT = """
MATCH (n) WHERE $history OR NOT n:{history}
WITH collect(n) AS ns
UNWIND range(0, size(ns) - 1, $batch) AS i
RETURN [x IN ns[i..i + $batch] |
        [elementId(x), labels(x), properties(x), [(x)-[r]->(y) | [elementId(y), type(r), properties(r)]]]]
"""

Node = list[Any]
"""``[elementId, labels, properties, [[end elementId, type, properties], ...]]``"""


async def export_chunks(
    driver: AsyncDriver, database: str | None = None, history: bool = False, batch: int = BATCH
) -> AsyncIterator[list[Node]]:
    """Chunks of nodes (see :data:`Node`); history nodes only when ``history``."""
    async with driver.session(database=database, fetch_size=1) as session:
        result = await session.run(_EXPORT.format(history=HISTORY_LABEL), history=history, batch=batch)
        async for record in result:
            yield record[0]


_INDEXES = "SHOW INDEXES YIELD name, type, entityType, labelsOrTypes, properties, options"
_CONSTRAINTS = "SHOW CONSTRAINTS YIELD name, type, entityType, labelsOrTypes, properties"


async def graph_checksum(driver: AsyncDriver, database: str | None = None) -> str:
    """sha256 of the sorted export described in the module docstring."""
    node_hash: dict[str, str] = {}
    outgoing: list[tuple[str, list[Any]]] = []
    async for chunk in export_chunks(driver, database):
        for eid, labels, props, rels in chunk:
            node_hash[eid] = digest([sorted(labels), props])
            if rels:
                outgoing.append((eid, rels))
    rel_lines = [
        f"{node_hash[a]} {rtype} {node_hash.get(b, b)} {canonical(props).decode()}"
        for a, rels in outgoing
        for b, rtype, props in rels
    ]
    schema = []
    async with driver.session(database=database) as session:
        for query in (_INDEXES, _CONSTRAINTS):
            result = await session.run(query)
            schema.extend([canonical(record.data()).decode() async for record in result])
    return sorted_sections({"nodes": node_hash.values(), "relationships": rel_lines, "schema": schema})
