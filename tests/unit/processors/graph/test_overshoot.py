"""The overshoot tracer and ``bench poincare``: the KPI (stabilised maps cut p99 |Δr| by ≥ 15 % against
the textbook formulas in the same run), the Parquet samples, and that the baseline is a fair one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from wavegraph.bench.poincare import run_poincare_bench
from wavegraph.processors.graph import overshoot as ov
from wavegraph.processors.graph import poincare as pb

KPI = 0.15


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> ov.OvershootTrace:
    return ov.trace_overshoot(out=tmp_path_factory.mktemp("overshoot") / "samples.parquet")


def test_kpi_holds_for_every_curvature_and_dtype(trace: ov.OvershootTrace) -> None:
    assert {(r["curvature"], r["dtype"]) for r in trace.reductions} == {
        (k, d) for k in (-1.0, -0.5, -2.0) for d in ("float16", "float32", "float64")
    }
    for red in trace.reductions:
        assert red["reduction"] >= KPI, red
        assert red["reduction_textbook_finite"] >= KPI, red  # not won by the textbook's inf alone
    assert trace.min_reduction >= KPI
    for row in trace.rows:
        assert row.n == 1000
        if row.method == "stabilised":
            assert row.nonfinite == 0
            assert math.isfinite(row.p99_abs_delta_r)


def test_parquet_holds_every_sample(trace: ov.OvershootTrace) -> None:
    assert trace.path is not None
    table = pq.read_table(trace.path)
    assert table.column_names == [
        "curvature",
        "dtype",
        "method",
        "sample",
        "r_target",
        "r_obtained",
        "delta_r",
    ]
    assert table.num_rows == 3 * 3 * 2 * 1000
    t = table.to_pydict()
    target, obtained, delta = (
        np.array(t[c], dtype=np.float64) for c in ("r_target", "r_obtained", "delta_r")
    )
    finite = np.isfinite(obtained)
    np.testing.assert_allclose(delta[finite], (target - obtained)[finite], rtol=1e-12, atol=1e-12)
    assert np.isfinite(target).all() and (target >= 0).all()
    # the samples reach close to the boundary: targets up to nearly the radius max_norm stands for
    for name in ("float16", "float32", "float64"):
        r_keep = 2 * math.atanh(1 - pb.ball_margin(name))  # κ = −1
        mask = (np.array(t["dtype"]) == name) & (np.array(t["curvature"]) == -1.0)
        assert target[mask].max() > 0.75 * r_keep


def test_summary_is_reproducible() -> None:
    a = ov.trace_overshoot([-1.0], ["float32"], n_points=200, seed=3)
    b = ov.trace_overshoot([-1.0], ["float32"], n_points=200, seed=3)
    assert a.as_dict() == b.as_dict()


@pytest.mark.parametrize("k", [-1.0, -0.5, -2.0])
def test_textbook_baseline_is_the_correct_formula(k: float) -> None:
    """On benign float64 inputs the baseline agrees with the stabilised maps: it is not a straw man."""
    c = -k
    rng = np.random.default_rng(0)
    x = ov.sample_ball(rng, 400, 6, k, "float64") * 0.9
    a = x[:1] * 0.5
    u = rng.standard_normal((400, 6))
    np.testing.assert_allclose(ov.textbook_recenter(x, a, c), pb.recenter(x, a, k=k), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ov.textbook_expmap0(u, c), pb.expmap0(u, k=k), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ov.textbook_logmap0(x, c), pb.logmap0(x, k=k), rtol=1e-9)


def test_target_is_the_distance_to_the_chosen_point() -> None:
    rng = np.random.default_rng(1)
    a, x = ov._sample(rng, 300, 16, 1.0, np.dtype("float64"), 0.25)
    assert (np.linalg.norm(x, axis=1) <= pb.max_norm(-1.0, "float64")).all()
    target = ov._exact_dist(x, a, 1.0).astype(np.float64)
    moderate = target < 10
    np.testing.assert_allclose(pb.dist(x, a, k=-1.0)[moderate], target[moderate], rtol=1e-9)


@pytest.mark.parametrize(("dtype", "tol"), [("float16", 1e-3), ("float32", 1e-6), ("float64", 1e-12)])
def test_round_trip_max_error(dtype: str, tol: float) -> None:
    for k in (-1.0, -0.5, -2.0):
        assert ov.round_trip_max_error(k, dtype, seeds=(0, 1), n_points=500) <= tol


def test_bench_writes_json_and_parquet(tmp_path: Path) -> None:
    report = run_poincare_bench(quick=True, out=tmp_path / "poincare.json")
    on_disk = orjson.loads((tmp_path / "poincare.json").read_bytes())
    assert on_disk["bench"] == "poincare" and on_disk["ratio"] == pytest.approx(report["ratio"])
    assert report["ratio"] >= KPI
    assert len(report["rows"]) == 9
    for row in report["rows"]:
        assert row["reduction_finite_pct"] >= 100 * KPI
        limit = {"float16": 1e-3, "float32": 1e-6, "float64": 1e-12}[row["dtype"]]
        assert row["round_trip_max_err"] <= limit
    assert (tmp_path / "poincare_overshoot.parquet").exists()
