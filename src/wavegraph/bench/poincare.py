"""``wavegraph bench poincare``: round-trip errors and the overshoot of stabilised vs textbook maps.

One row per (curvature, dtype): ``round_trip_max_err``, the largest ``|exp₀(log₀(x)) − x|`` of the
stabilised maps over seeded points (near-boundary ones included); ``p99_dr_textbook`` and
``p99_dr_stabilised``, the p99 of the hyperbolic ``|Δr|`` after recentering + round trip (same inputs,
same run, see :mod:`wavegraph.processors.graph.overshoot`; ``inf`` — ``null`` in the JSON — when more
than 1 % of the results are non-finite); ``p99_dr_*_finite``, the same over only the samples where the
textbook result is finite; ``nonfinite_*``, the count of inf/nan results; and the
reduction ``1 − p99_stabilised / p99_textbook`` in %, over all samples (``reduction_pct``, a
non-finite result counting as ``inf``) and over only the samples where the textbook result is finite
(``reduction_finite_pct``). ``ratio`` is the smallest reduction of
all rows and both columns, as a fraction (the KPI asks ≥ 0.15). Every sample is written to
``poincare_overshoot.parquet`` beside the JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wavegraph.processors.graph.overshoot import CURVATURES, DTYPES, round_trip_max_error, trace_overshoot
from wavegraph.report import build_report, write_report

__all__ = ["run_poincare_bench"]

PARQUET_NAME = "poincare_overshoot.parquet"


def run_poincare_bench(quick: bool = False, out: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Run the bench, write the JSON report (default ``bench/results/poincare.json``) and the samples."""
    json_path = out or Path("bench/results") / "poincare.json"
    n_points, seeds = (1000, (seed,)) if quick else (1000, (seed, seed + 1, seed + 2))
    trace = trace_overshoot(
        CURVATURES, DTYPES, n_points=n_points, seed=seed, out=json_path.parent / PARQUET_NAME
    )
    by_case = {(r.curvature, r.dtype, r.method): r for r in trace.rows}
    rows: list[dict[str, Any]] = []
    for red in trace.reductions:
        kappa, dtype = red["curvature"], red["dtype"]
        text, stab = by_case[(kappa, dtype, "textbook")], by_case[(kappa, dtype, "stabilised")]
        rows.append(
            {
                "curvature": kappa,
                "dtype": dtype,
                "round_trip_max_err": round_trip_max_error(kappa, dtype, seeds=seeds),
                "p99_dr_textbook": text.p99_abs_delta_r,
                "p99_dr_stabilised": stab.p99_abs_delta_r,
                "p99_dr_textbook_finite": text.p99_abs_delta_r_textbook_finite,
                "p99_dr_stabilised_finite": stab.p99_abs_delta_r_textbook_finite,
                "nonfinite_textbook": text.nonfinite,
                "nonfinite_stabilised": stab.nonfinite,
                "reduction_pct": _pct(red["reduction"]),
                "reduction_finite_pct": _pct(red["reduction_textbook_finite"]),
            }
        )
    params = {
        "quick": quick,
        "seed": seed,
        "points_per_case": n_points,
        "dim": 16,
        "round_trip_seeds": list(seeds),
        "curvatures": list(CURVATURES),
        "dtypes": list(DTYPES),
        "samples": str(json_path.parent / PARQUET_NAME),
    }
    ratio = None if math.isnan(trace.min_reduction) else trace.min_reduction
    report = build_report("poincare", params, rows, ratio)
    write_report(report, json_path)
    return report


def _pct(fraction: float) -> float | None:
    return None if math.isnan(fraction) else 100.0 * fraction
