"""NodeStore.write_neo4j: a row Neo4j refuses costs only that row; an outage propagates.

Mocked fault: the real Neo4j accepts every value the graph job writes (ids, float lists, NaN included),
so a driver that refuses chosen ids stands in for it. PostgreSQL's refusals are caused for real in
``tests/integration/graph/test_node_store.py``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
from neo4j import AsyncDriver
from neo4j.exceptions import CypherTypeError, ServiceUnavailable

from wavegraph.sinks.node_embeddings import NodeRows, NodeStore


class RefusingDriver:
    """Stores the rows of each query unless one of them has a refused id (then the whole query fails)."""

    def __init__(self, refused: set[str], down: bool = False) -> None:
        self.refused = refused
        self.down = down
        self.stored: list[str] = []
        self.queries = 0

    async def execute_query(self, query: str, *, rows: list[dict[str, Any]], **params: Any) -> None:
        self.queries += 1
        if self.down:
            raise ServiceUnavailable("connection refused")
        if any(row["id"] in self.refused for row in rows):
            raise CypherTypeError("Property values can only be of primitive types")
        self.stored += [row["id"] for row in rows]


def node_rows(n: int) -> NodeRows:
    ids = [f"v{i}" for i in range(n)]
    vec = np.full((n, 4), 0.1, np.float32)
    return NodeRows("acme", 1, ids, np.full(n, 1.0 / n), vec, vec)


def store(driver: RefusingDriver, chunk: int = 16) -> NodeStore:
    return NodeStore(cast(AsyncDriver, driver), cast(Any, None), chunk=chunk)


async def test_refused_rows_are_skipped_and_every_other_row_is_stored() -> None:
    driver = RefusingDriver({"v3", "v17", "v18"})
    advanced: list[int] = []
    refused = await store(driver).write_neo4j(node_rows(40), advanced.append)
    assert refused == 3
    assert sorted(driver.stored) == sorted(f"v{i}" for i in range(40) if i not in (3, 17, 18))
    assert sum(advanced) == 40  # progress counts every row, written or skipped
    assert driver.queries < 40  # halves, not one query per row


async def test_nothing_refused_is_one_query_per_chunk() -> None:
    driver = RefusingDriver(set())
    assert await store(driver).write_neo4j(node_rows(40)) == 0
    assert driver.queries == 3 and len(driver.stored) == 40


async def test_an_outage_propagates() -> None:
    driver = RefusingDriver(set(), down=True)
    with pytest.raises(ServiceUnavailable):
        await store(driver).write_neo4j(node_rows(5))
    assert driver.queries == 1  # not split: the caller retries the whole write later
