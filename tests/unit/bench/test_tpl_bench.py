"""``wavegraph bench tpl``: the report's shape, and the rule of the CI gate "fail below 2×"."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from rich.console import Console

from wavegraph.bench.tpl import make_batch, run_tpl_bench, slow_cases, synthetic_graph
from wavegraph.processors.graph.state import GraphState

MIN_SPEEDUP = 2.0  # backlog: "fail CI if ratio < 2×", for every ΔE ≤ 20 %
REQUIRED_L1 = 1e-6


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "tpl.json"
    report = run_tpl_bench(quick=True, out=out, console=quiet())
    assert orjson.loads(out.read_bytes()) == report
    return report


def test_quick_report_has_the_shared_format(quick_report: dict[str, Any]) -> None:
    assert quick_report["bench"] == "tpl"
    assert {"created", "machine", "params", "rows", "ratio"} <= set(quick_report)
    assert quick_report["params"]["quick"] is True and quick_report["params"]["edges"] >= 100_000
    rows = quick_report["rows"]
    assert [row["delta_pct"] for row in rows] == [1, 10, 20]
    for row in rows:
        assert {"case", "full_s", "incremental_s", "speedup", "l1_error"} <= set(row)
        assert row["speedup"] == pytest.approx(row["full_s"] / row["incremental_s"])
        assert row["inserted"] + row["updated"] + row["deleted"] > 0 and row["new_nodes"] > 0
    assert quick_report["ratio"] == rows[0]["speedup"]


def test_incremental_equals_full_recompute(quick_report: dict[str, Any]) -> None:
    for row in quick_report["rows"]:
        assert row["l1_error"] <= REQUIRED_L1, row


def test_the_gate_reports_the_cases_below_the_minimum_over_the_best_of_runs() -> None:
    """The CI gate (``wavegraph bench tpl --quick --gate 2``, a make test step) decides from these; the
    speed itself is measured by that step, not by a timed unit test."""

    def report(*speedups: float) -> dict[str, Any]:
        return {
            "rows": [{"delta_pct": p, "speedup": s} for p, s in zip((1, 10, 20, 50), speedups, strict=False)]
        }

    assert slow_cases([report(3.0, 2.5, 2.1, 1.0)], MIN_SPEEDUP) == {}  # 50 % is not gated
    assert slow_cases([report(3.0, 1.5, 2.1)], MIN_SPEEDUP) == {10: 1.5}
    assert slow_cases([report(3.0, 1.5, 2.1), report(1.0, 2.2, 1.9)], MIN_SPEEDUP) == {}


def test_bench_on_a_user_edge_file(tmp_path: Path) -> None:
    src, dst, weight = synthetic_graph(500, 4_000, seed=3)
    path = tmp_path / "edges.tsv"
    path.write_text("".join(f"{s}\t{d}\t{w:g}\n" for s, d, w in zip(src, dst, weight, strict=True)))
    report = run_tpl_bench(
        edges=path, out=tmp_path / "tpl.json", console=quiet(), deltas_pct=(1, 20), repeats=1
    )
    assert report["params"]["source"] == str(path) and report["params"]["edges"] == 4_000
    assert [row["delta_pct"] for row in report["rows"]] == [1, 20]
    assert all(row["l1_error"] <= REQUIRED_L1 for row in report["rows"])


def test_synthetic_graph_and_batches_are_seeded() -> None:
    a, b = synthetic_graph(300, 2_000, seed=1), synthetic_graph(300, 2_000, seed=1)
    assert a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2])
    assert len(set(zip(a[0], a[1], strict=True))) == 2_000  # distinct edges
    base = GraphState.from_edges(*a)
    remove, add = make_batch(base, 0.1, np.random.default_rng(0))
    assert len(remove[0]) == 100 and len(add[0]) == 100
    assert all(base.out_edges(s).get(d) is not None for s, d in zip(*remove, strict=True))
