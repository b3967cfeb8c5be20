"""``wavegraph bench pgvector --quick`` end to end: the report has the fields BENCH.md names."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from wavegraph.bench.pgvector import EF_SEARCH, PROBES, run_pgvector_bench
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


def test_quick_bench_report(migrated: Settings, tmp_path: Path) -> None:
    out = tmp_path / "pgvector.json"
    table = f"test_bench_{uuid.uuid4().hex[:8]}"
    report = run_pgvector_bench(
        migrated, quick=True, out=out, table=table, console=Console(file=io.StringIO())
    )
    assert json.loads(out.read_text())["bench"] == "pgvector"
    rows = report["rows"]
    assert [r["probes"] for r in rows if r["index"] == "ivfflat"] == list(PROBES)
    assert [r["ef_search"] for r in rows if r["index"] == "hnsw"] == list(EF_SEARCH)
    for row in rows:
        assert {
            "index",
            "lists",
            "probes",
            "recall@5",
            "p95_ms",
            "build_s",
            "p50_ms",
            "p99_ms",
            "qps",
        } <= set(row)
        assert 0.0 <= row["recall@5"] <= 1.0 and row["p95_ms"] > 0
    ivf = [r["recall@5"] for r in rows if r["index"] == "ivfflat"]
    assert ivf[-1] >= 0.9 and ivf[-1] >= ivf[0]
    params = report["params"]
    assert params["probes_needed"] in PROBES
    assert report["ratio"] == pytest.approx(params["p95_ms_at_probes_needed"] / 30.0)
