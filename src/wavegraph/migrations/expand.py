"""Statements run once per relationship type, for Neo4j versions whose dynamic types are unreliable.

Neo4j 5.26.0 resolves a dynamic relationship type in ``CREATE``/``MERGE`` (``[r:$(expr)]``) once per
query plan: every row of the query, and every later run of the same query text, gets the type of the
first row (neo4j/neo4j#13597; reproduced here, dynamic *labels* are not affected). A statement that
re-creates relationships therefore names the type literally and is expanded by the runner:

    // wavegraph:for-each-relationship-type
    MATCH (d)-[r:${rel_type}]->(b) ... CREATE (s)-[m:${rel_type}]->(b) ...

runs once per type in ``db.relationshipTypes()``, with ``${rel_type}`` replaced by the backtick-quoted
type name.
"""

from __future__ import annotations

from wavegraph.migrations.target import Session

FOR_EACH_TYPE = "// wavegraph:for-each-relationship-type"
REL_TYPE = "${rel_type}"
RUNTIME_PLACEHOLDERS = frozenset({"rel_type"})
"""Placeholders filled when the statement runs, not when the file is read."""

_TYPES = (
    "CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType ORDER BY relationshipType"
)


def quote(name: str) -> str:
    """A Cypher identifier in backticks (a backtick inside is doubled)."""
    return "`" + name.replace("`", "``") + "`"


async def run_statement(session: Session, statement: str) -> None:
    """Run ``statement``, once per relationship type when it carries :data:`FOR_EACH_TYPE`."""
    if not any(line.strip() == FOR_EACH_TYPE for line in statement.splitlines()):
        await session.run(statement)
        return
    for rel_type in await session.values(_TYPES):
        await session.run(statement.replace(REL_TYPE, quote(rel_type)))
