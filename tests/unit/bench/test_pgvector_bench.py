"""The pgvector bench's pure helpers: bytes scanned from a plan, the bandwidth floor, the probes pick,
and the server options ``services up`` starts PostgreSQL with."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from wavegraph.bench.pgvector import BLOCK, floor_ms, measure_bandwidth, plan_bytes, probes_needed
from wavegraph.settings import PostgresSettings
from wavegraph.sinks.pgvector_ddl import order_expr


def _node(
    hit: int, read: int = 0, temp: int = 0, children: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    node: dict[str, Any] = {"Shared Hit Blocks": hit, "Shared Read Blocks": read, "Temp Written Blocks": temp}
    if children is not None:
        node["Plans"] = children
    return node


def test_plan_bytes_takes_the_inclusive_count_even_when_the_top_node_is_smaller() -> None:
    # the store's query: Sort over a CTE scan whose subplan (the index scan) holds the page counts
    plan = {"Plan": _node(0, children=[_node(0), _node(1200, 30, 7, children=[_node(1100, 30, 7)])])}
    assert plan_bytes(plan) == {"scan_bytes": 1230 * BLOCK, "read_bytes": 30 * BLOCK, "temp_bytes": 7 * BLOCK}
    assert plan_bytes({"Plan": {}}) == {"scan_bytes": 0, "read_bytes": 0, "temp_bytes": 0}
    with pytest.raises(ValueError, match="Plan"):
        plan_bytes({"Planning Time": 0.1})


def test_floor_is_bytes_over_bandwidth() -> None:
    assert floor_ms(200e6, 20e9) == pytest.approx(10.0)
    assert floor_ms(0, 1e9) == 0.0
    with pytest.raises(ValueError):
        floor_ms(1e6, 0)
    with pytest.raises(ValueError):
        floor_ms(-1, 1e9)


def test_measure_bandwidth_is_a_plausible_rate() -> None:
    rate = measure_bandwidth(64 * 2**20, repeats=2)
    assert 1e8 < rate < 1e12  # 0.1 GB/s .. 1 TB/s: a rate, not seconds or a block count
    with pytest.raises(ValueError):
        measure_bandwidth(4)
    with pytest.raises(ValueError):
        measure_bandwidth(1024, repeats=0)


def _row(probes: int, recall: float, storage: str = "vector", lists: int = 100) -> dict[str, Any]:
    return {"index": "ivfflat", "lists": lists, "probes": probes, "storage": storage, "recall@5": recall}


def test_probes_needed_is_the_smallest_passing_probes_of_that_index() -> None:
    rows = [
        _row(8, 0.88),
        _row(12, 0.905),
        _row(14, 0.899),  # sampling noise after a pass: 12 still counts
        _row(16, 0.93),
        _row(10, 0.95, storage="halfvec"),
        _row(4, 0.97, lists=1000),
        {"index": "hnsw", "lists": None, "probes": None, "storage": "vector", "recall@5": 0.99},
    ]
    assert probes_needed(rows, 100, 5)["probes"] == 12  # type: ignore[index]
    assert probes_needed(rows, 100, 5, "halfvec")["probes"] == 10  # type: ignore[index]
    assert probes_needed(rows, 1000, 5)["probes"] == 4  # type: ignore[index]
    assert probes_needed(rows[:1], 100, 5) is None
    assert probes_needed([{k: v for k, v in _row(8, 0.91).items() if k != "storage"}], 100, 5) is not None


def test_order_expr_matches_the_index_expression() -> None:
    assert order_expr("vector", 384) == "embedding <=> $1"
    assert order_expr("halfvec", 384) == "embedding::halfvec(384) <=> ($1::vector)::halfvec(384)"
    with pytest.raises(ValueError, match="storage"):
        order_expr("float16", 384)  # type: ignore[arg-type]


def test_server_options_carry_the_memory_settings_and_refuse_garbage() -> None:
    pg = PostgresSettings(shared_buffers="1GB", work_mem="16MB")
    opts = pg.server_options().split()
    assert "shared_buffers=1GB" in opts and "work_mem=16MB" in opts
    assert f"maintenance_work_mem={pg.maintenance_work_mem}" in opts
    assert opts.count("-c") == len(opts) // 2
    with pytest.raises(pydantic.ValidationError):
        PostgresSettings(shared_buffers="3 gigs; DROP TABLE x")
