"""Synthetic graphs with duplicated (tenant, id) keys, the data the HAA migration exists for.

``seed_duplicates`` writes ``nodes`` (:Node) records of which ``dup_fraction`` repeat the key of another
record, each duplicate with a property of its own (``dup_<seq>``) and at least one relationship in each
direction, plus random relationships (types LINKS / MENTIONS / REPLIES_TO, with weight, ts, event_id and
tenant, as the edge sink writes them), some between two duplicates and some self-loops. Deterministic
for a seed. Used by the tests, ``migrate dry-run --sample duplicates`` and ``bench haa-migration``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from neo4j import AsyncDriver

from wavegraph.migrations.expand import quote

REL_TYPES = ("LINKS", "MENTIONS", "REPLIES_TO")
BATCH = 5_000

_NODES = "UNWIND $rows AS r CREATE (n:Node) SET n = r RETURN n.seq AS seq, elementId(n) AS eid"
# One query per type with the type written literally: Neo4j 5.26.0 resolves [e:$(r.type)] once per plan
# (see wavegraph.migrations.expand).
_RELS = """
UNWIND $rows AS r
MATCH (a) WHERE elementId(a) = r.a
MATCH (b) WHERE elementId(b) = r.b
CREATE (a)-[e:{rel_type}]->(b)
SET e.weight = r.weight, e.ts = r.ts, e.event_id = r.event_id, e.tenant = r.tenant
"""


@dataclass(frozen=True)
class Seeded:
    tenant: str
    nodes: int
    relationships: int
    duplicate_records: int
    duplicated_keys: int


def plan(
    tenant: str, nodes: int, rels: int, dup_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The node and relationship rows of the sample (``seq`` numbers every node record); at least
    two relationships per duplicate even when ``rels`` is smaller."""
    rng = random.Random(seed)
    n_dups = round(nodes * dup_fraction)
    n_keys = nodes - n_dups
    node_rows: list[dict[str, Any]] = [
        {"tenant": tenant, "id": f"n{i}", "seq": i, "name": f"node {i}", "rank": rng.random()}
        for i in range(n_keys)
    ]
    dup_seqs = []
    for j in range(n_dups):
        seq = n_keys + j
        original = rng.randrange(n_keys)
        row = {"tenant": tenant, "id": f"n{original}", "seq": seq, "name": f"copy {j} of n{original}"}
        row[f"dup_{seq}"] = rng.random()
        node_rows.append(row)
        dup_seqs.append(seq)
    pairs: list[tuple[int, int]] = []
    for seq in dup_seqs:  # every duplicate carries relationships in both directions
        pairs.append((seq, rng.randrange(nodes)))
        pairs.append((rng.randrange(nodes), seq))
    for k in range(min(len(dup_seqs) // 10, max(0, rels - len(pairs)))):  # duplicate -> duplicate, self-loops
        a = dup_seqs[k]
        pairs.append((a, dup_seqs[-k - 1] if k % 2 else a))
    while len(pairs) < rels:
        pairs.append((rng.randrange(nodes), rng.randrange(nodes)))
    rel_rows = [
        {
            "tenant": tenant,
            "a": a,
            "b": b,
            "type": REL_TYPES[i % len(REL_TYPES)],
            "weight": round(rng.random(), 6),
            "ts": 1_700_000_000.0 + i,
            "event_id": f"e{i}",
        }
        for i, (a, b) in enumerate(pairs)
    ]
    return node_rows, rel_rows


async def seed_duplicates(
    driver: AsyncDriver,
    *,
    tenant: str = "sample",
    nodes: int = 10_000,
    relationships: int | None = None,
    dup_fraction: float = 0.05,
    seed: int = 0,
    database: str | None = None,
) -> Seeded:
    """Write the sample graph (see the module docstring); ``relationships`` defaults to 3 per node."""
    node_rows, rel_rows = plan(tenant, nodes, relationships or 3 * nodes, dup_fraction, seed)
    eid: dict[int, str] = {}
    for chunk in _chunks(node_rows):
        records, _, _ = await driver.execute_query(_NODES, rows=chunk, database_=database)
        eid.update((r["seq"], r["eid"]) for r in records)
    for row in rel_rows:
        row["a"], row["b"] = eid[row["a"]], eid[row["b"]]
    for rel_type in REL_TYPES:
        query = _RELS.format(rel_type=quote(rel_type))
        for chunk in _chunks([row for row in rel_rows if row["type"] == rel_type]):
            await driver.execute_query(query, rows=chunk, database_=database)
    n_dups = round(nodes * dup_fraction)
    keys = {row["id"] for row in node_rows[nodes - n_dups :]}
    return Seeded(tenant, len(node_rows), len(rel_rows), n_dups, len(keys))


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), BATCH):
        yield rows[i : i + BATCH]
