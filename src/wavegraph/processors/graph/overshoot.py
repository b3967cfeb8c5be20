r"""The overshoot tracer: how far recentering plus a round trip ``exp₀(log₀(·))`` moves points radially.

For each curvature and dtype the tracer stores a chosen point ``a`` (by default a "leaf": halfway out to
the largest radius the dtype's ball keeps) and 1,000 seeded points ``x`` around it, recenters
``y = (−a) ⊕ x`` and round-trips ``z = exp₀(log₀(y))``, once with the stabilised maps of
:mod:`.poincare` and once with the plain textbook formulas below, from the very same stored inputs.
Radii are *hyperbolic* (geodesic distance to the origin), the quantity recentering must preserve:

- ``r_target = d_κ(a, x)`` from the closed form ``arcosh(1 + 2c‖x − a‖²/((1 − c‖x‖²)(1 − c‖a‖²)))/√c``,
  evaluated in ``numpy.longdouble`` on the stored (already rounded) ``a`` and ``x``: a formula neither
  method uses, at a higher precision than either;
- ``r_obtained = (2/√c)·artanh(√c‖z‖)`` of the stored result, also in ``longdouble``; a point on or past
  the boundary has ``r_obtained = inf`` and a ``nan`` coordinate gives ``nan``;
- ``delta_r = r_target − r_obtained`` (negative = overshoot); in percentiles ``nan`` counts as ``+inf``.

Euclidean radii would hide the problem: near the boundary one unit in the last place of ``‖y‖`` is a
hyperbolic error of ``eps/(1 − √c‖y‖)``, which is what a user of the embedding sees. Inputs and targets
are kept representable: targets are drawn in ``a``'s frame, half uniform in hyperbolic radius and half
"near the boundary" (``1 − √c‖y‖`` log-uniform in ``[4·margin, 1e-2]``), and a sample whose stored ``x``
lies beyond ``max_norm`` or whose target lies beyond the radius ``max_norm`` stands for is redrawn, so
neither method is charged for what the storage format cannot hold.

The summary gives p50/p99 of ``|delta_r|`` per (curvature, dtype, method), the count of non-finite
results, and the p99 reduction twice: over all samples (non-finite counted as ``inf``) and over only the
samples where the textbook result is finite, so the KPI cannot be met by the textbook's ``inf`` alone.

What the two methods differ in: the textbook formulas run in the storage dtype, and near a far-out
``a`` the denominator ``1 − 2c⟨a,x⟩ + c²‖a‖²‖x‖²`` of ``(−a) ⊕ x`` cancels to noise (even ≤ 0, so the
point leaves the ball), ``‖y‖`` rounds to ``1/√c`` and ``artanh`` returns ``inf`` (then ``inf/inf =
nan`` in ``exp₀``). The stabilised maps use the cancellation-free forms in float64 and round once.
With ``a`` at the origin (no recentering cancellation) and float64 storage the two are at parity
(noise at a few units in the last place): the float64 gain comes from the formulas, the
float16/float32 gain also from the float64 internals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wavegraph.processors.graph import poincare as pb

__all__ = [
    "CURVATURES",
    "DTYPES",
    "OvershootRow",
    "OvershootTrace",
    "round_trip_max_error",
    "sample_ball",
    "textbook_expmap0",
    "textbook_logmap0",
    "textbook_mobius_add",
    "textbook_recenter",
    "trace_overshoot",
]

CURVATURES: tuple[float, ...] = (-1.0, -0.5, -2.0)
DTYPES: tuple[str, ...] = ("float16", "float32", "float64")

_LD = np.longdouble


# ----------------------------------------------------------------------------------- textbook baseline
# The formulas as printed (Ganea et al. 2018), in the dtype of the input, with no clamp, no floor and no
# projection. They are the baseline of the comparison only; callers silence NumPy's warnings.


def textbook_mobius_add(x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    """``((1 + 2c⟨x,y⟩ + c‖y‖²)x + (1 − c‖x‖²)y) / (1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖²)``, unguarded."""
    xy = np.sum(x * y, axis=-1, keepdims=True)
    x2 = np.sum(x * x, axis=-1, keepdims=True)
    y2 = np.sum(y * y, axis=-1, keepdims=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    den = 1 + 2 * c * xy + c * c * x2 * y2
    return num / den


def textbook_recenter(x: np.ndarray, a: np.ndarray, c: float) -> np.ndarray:
    """``(−a) ⊕ x`` with :func:`textbook_mobius_add`."""
    return textbook_mobius_add(-a, x, c)


def textbook_expmap0(u: np.ndarray, c: float) -> np.ndarray:
    """``tanh(√c‖u‖) · u / (√c‖u‖)``, unguarded."""
    sc = math.sqrt(c)
    n = np.linalg.norm(u, axis=-1, keepdims=True)
    return np.tanh(sc * n) * u / (sc * n)


def textbook_logmap0(y: np.ndarray, c: float) -> np.ndarray:
    """``artanh(√c‖y‖) · y / (√c‖y‖)``, unguarded."""
    sc = math.sqrt(c)
    n = np.linalg.norm(y, axis=-1, keepdims=True)
    return np.arctanh(sc * n) * y / (sc * n)


# ------------------------------------------------------------------------------------------- sampling


def _radius_of_delta(delta: np.ndarray | float, c: float) -> Any:
    """Hyperbolic radius of a point with ``√c‖y‖ = 1 − delta``: ``(2/√c)·artanh(1 − delta)``."""
    d = np.asarray(delta, dtype=_LD)
    return np.log((2 - d) / d) / _LD(math.sqrt(c))


def _ball_point(direction: np.ndarray, radius: np.ndarray, c: float) -> np.ndarray:
    """Longdouble points at hyperbolic ``radius`` along unit ``direction``: ``tanh(√c r/2)/√c · dir``."""
    sc = _LD(math.sqrt(c))
    rho = np.tanh(sc * np.asarray(radius, dtype=_LD) / 2) / sc
    return direction.astype(_LD) * rho[..., None]


def _store(points: np.ndarray, c: float, dtype: np.dtype[Any]) -> np.ndarray:
    """Round ``points`` to ``dtype``, shrinking the rare ones that rounding pushed onto the boundary."""
    cl = _LD(c)
    shrink = 1 - _LD(np.finfo(dtype).eps)
    points = points.copy()
    out = points.astype(dtype)
    for _ in range(64):
        bad = 1 - cl * np.sum(out.astype(_LD) ** 2, axis=-1) <= 0
        if not bad.any():
            break
        points[bad] *= shrink
        out[bad] = points[bad].astype(dtype)
        shrink *= shrink
    return out


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    g = rng.standard_normal((n, dim))
    return g / np.linalg.norm(g, axis=-1, keepdims=True)


def _mobius_add_ld(x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    """``x ⊕ y`` in longdouble, in the cancellation-free form (builds inputs only, never a target)."""
    cl = _LD(c)
    s = x + y
    cs2 = cl * np.sum(s * s, axis=-1, keepdims=True)
    bx = 1 - cl * np.sum(x * x, axis=-1, keepdims=True)
    by = 1 - cl * np.sum(y * y, axis=-1, keepdims=True)
    return (bx * s + cs2 * x) / (cs2 + bx * by)


def _exact_dist(x: np.ndarray, a: np.ndarray, c: float) -> np.ndarray:
    """``arcosh(1 + 2c‖x − a‖²/((1 − c‖x‖²)(1 − c‖a‖²)))/√c`` in longdouble, via ``log1p``."""
    xl, al, cl = x.astype(_LD), a.astype(_LD), _LD(c)
    z = 2 * cl * np.sum((xl - al) ** 2, axis=-1)
    z = z / ((1 - cl * np.sum(xl * xl, axis=-1)) * (1 - cl * np.sum(al * al, axis=-1)))
    return np.log1p(z + np.sqrt(z * (z + 2))) / np.sqrt(cl)


def _radius(z: np.ndarray, c: float) -> np.ndarray:
    """Hyperbolic radius in longdouble: ``inf`` on or past the boundary, ``nan`` for nan coordinates."""
    sc = _LD(math.sqrt(c))
    rho = sc * np.linalg.norm(z.astype(_LD), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 2 * np.arctanh(np.minimum(rho, _LD(1))) / sc
    return np.where(np.isnan(rho), np.nan, r)


# ---------------------------------------------------------------------------------------------- trace


@dataclass(frozen=True)
class OvershootRow:
    """p50/p99 of ``|delta_r|`` for one (curvature, dtype, method); ``nonfinite`` counts inf/nan results."""

    curvature: float
    dtype: str
    method: str
    n: int
    p50_abs_delta_r: float
    p99_abs_delta_r: float
    p99_abs_delta_r_textbook_finite: float
    max_abs_delta_r: float
    nonfinite: int


@dataclass(frozen=True)
class OvershootTrace:
    """The tracer's result: per-method rows, reductions per (curvature, dtype), and the Parquet path."""

    rows: list[OvershootRow]
    reductions: list[dict[str, Any]]
    path: Path | None
    min_reduction: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": [asdict(r) for r in self.rows],
            "reductions": self.reductions,
            "path": str(self.path) if self.path else None,
            "min_reduction": self.min_reduction,
        }


def _sample(
    rng: np.random.Generator, n: int, dim: int, c: float, dtype: np.dtype[Any], center_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """The chosen point ``a`` (shape ``(1, dim)``) and ``n`` points ``x`` around it, stored in ``dtype``.

    ``a`` lies at ``center_fraction`` of ``r_keep``, the hyperbolic radius ``max_norm`` stands for. Each
    sample is a pair of radii: the target ``r_y = d(a, x)`` (half uniform up to ``1 − √c‖y‖ = 1e-2``,
    half with ``1 − √c‖y‖`` log-uniform in ``[4·margin, 1e-2]``) and the input's own radius ``r_x``
    (uniform over what the triangle inequality and ``r_keep`` allow); the angle at ``a`` between the
    origin and ``x`` follows from the hyperbolic law of cosines. ``x = a ⊕ y`` is built in longdouble
    and stored; the rare stored ``x`` beyond ``max_norm`` or with a target beyond ``r_keep`` is redrawn.
    """
    sc = _LD(math.sqrt(c))
    margin = pb.ball_margin(dtype)
    r_keep = _radius_of_delta(margin, c)
    limit = _LD(pb.max_norm(-c, dtype))
    a_dir = _unit(rng, 1, dim)
    r_a = r_keep * _LD(center_fraction)
    a = _store(_ball_point(a_dir, np.array([r_a]), c), c, dtype)
    kept: list[np.ndarray] = []
    count = 0
    while count < n:
        half = n // 2
        r_near = _radius_of_delta(np.exp(rng.uniform(np.log(4 * margin), np.log(1e-2), n - half)), c)
        r_uniform = rng.uniform(0.0, float(_radius_of_delta(1e-2, c)), half).astype(_LD)
        r_y = np.concatenate([r_uniform, r_near])
        lo, hi = np.abs(r_y - r_a), np.minimum(r_y + r_a, r_keep)
        r_x = lo + (hi - lo) * rng.uniform(0.0, 1.0, n).astype(_LD)
        # law of cosines at a: cosh(√c r_x) = cosh(√c r_a)cosh(√c r_y) − sinh(√c r_a)sinh(√c r_y)·cos φ
        num = np.cosh(sc * r_a) * np.cosh(sc * r_y) - np.cosh(sc * r_x)
        den = np.sinh(sc * r_a) * np.sinh(sc * r_y)
        cos_phi = np.clip(np.divide(num, den, out=np.ones_like(num), where=den > 0), -1, 1)
        side = _unit(rng, n, dim).astype(_LD)
        side -= np.sum(side * a_dir, axis=1, keepdims=True) * a_dir  # ⟂ a (the origin is at −a)
        side /= np.linalg.norm(side, axis=1, keepdims=True)
        y_dir = -cos_phi[:, None] * a_dir + np.sqrt(1 - cos_phi**2)[:, None] * side
        y = _ball_point(y_dir, r_y, c)
        x = _store(_mobius_add_ld(np.broadcast_to(a.astype(_LD), y.shape), y, c), c, dtype)
        ok = (np.linalg.norm(x.astype(_LD), axis=-1) <= limit) & (_exact_dist(x, a, c) <= r_keep)
        kept.append(x[ok])
        count += int(ok.sum())
    return a, np.concatenate(kept)[:n]


def _methods(x: np.ndarray, a: np.ndarray, c: float) -> dict[str, np.ndarray]:
    k = -c
    stabilised = pb.expmap0(pb.logmap0(pb.recenter(x, a, k=k), k=k), k=k)
    with np.errstate(all="ignore"):
        textbook = textbook_expmap0(textbook_logmap0(textbook_recenter(x, a, c), c), c)
    return {"textbook": textbook, "stabilised": stabilised}


def _quantile(values: np.ndarray, q: float) -> float:
    """Quantile without interpolation (``inf`` entries stay ``inf`` instead of turning into ``nan``)."""
    if values.size == 0:
        return math.nan
    return float(np.quantile(values, q, method="inverted_cdf"))


def _reduction(textbook: float, stabilised: float) -> float:
    """``1 − stabilised/textbook``; 1.0 when only the textbook is infinite, nan when both are."""
    if math.isinf(textbook):
        return math.nan if math.isinf(stabilised) else 1.0
    if textbook == 0:
        return 0.0 if stabilised == 0 else -math.inf
    return 1.0 - stabilised / textbook


def _trace_one(
    kappa: float, name: str, rng: np.random.Generator, n: int, dim: int, center_fraction: float
) -> tuple[list[OvershootRow], dict[str, Any], dict[str, list[Any]]]:
    c = pb.curvature_c(kappa)
    a, x = _sample(rng, n, dim, c, np.dtype(name), center_fraction)
    target = _exact_dist(x, a, c)
    radii = {m: _radius(z, c) for m, z in _methods(x, a, c).items()}
    abs_dr = {m: np.nan_to_num(np.abs(target - r), nan=np.inf) for m, r in radii.items()}
    textbook_finite = np.isfinite(abs_dr["textbook"])
    rows = [
        OvershootRow(
            curvature=float(kappa),
            dtype=name,
            method=m,
            n=int(d.size),
            p50_abs_delta_r=_quantile(d, 0.5),
            p99_abs_delta_r=_quantile(d, 0.99),
            p99_abs_delta_r_textbook_finite=_quantile(d[textbook_finite], 0.99),
            max_abs_delta_r=float(d.max()),
            nonfinite=int((~np.isfinite(d)).sum()),
        )
        for m, d in abs_dr.items()
    ]
    text, stab = rows
    reduction = {
        "curvature": float(kappa),
        "dtype": name,
        "reduction": _reduction(text.p99_abs_delta_r, stab.p99_abs_delta_r),
        "reduction_textbook_finite": _reduction(
            text.p99_abs_delta_r_textbook_finite, stab.p99_abs_delta_r_textbook_finite
        ),
    }
    columns: dict[str, list[Any]] = {k: [] for k in _COLUMNS}
    for m, r in radii.items():
        columns["curvature"] += [float(kappa)] * n
        columns["dtype"] += [name] * n
        columns["method"] += [m] * n
        columns["sample"] += list(range(n))
        columns["r_target"] += target.astype(np.float64).tolist()
        columns["r_obtained"] += r.astype(np.float64).tolist()
        columns["delta_r"] += (target - r).astype(np.float64).tolist()
    return rows, reduction, columns


_COLUMNS = ("curvature", "dtype", "method", "sample", "r_target", "r_obtained", "delta_r")


def trace_overshoot(
    curvatures: Sequence[float] = CURVATURES,
    dtypes: Sequence[str] = DTYPES,
    *,
    n_points: int = 1000,
    dim: int = 16,
    seed: int = 0,
    center_fraction: float = 0.5,
    out: Path | None = None,
) -> OvershootTrace:
    """Run the tracer; write every sample to ``out`` (Parquet) when given; return the summary.

    Parquet columns: ``curvature, dtype, method, sample, r_target, r_obtained, delta_r`` (one row per
    sample and method; ``sample`` pairs the two methods' rows). ``reduction = 1 − p99_stabilised /
    p99_textbook`` of ``|delta_r|`` (1.0 when only the textbook's p99 is infinite);
    ``reduction_textbook_finite`` is the same over the samples where the textbook result is finite;
    ``min_reduction`` is the smallest of both over all (curvature, dtype).
    """
    columns: dict[str, list[Any]] = {k: [] for k in _COLUMNS}
    rows: list[OvershootRow] = []
    reductions: list[dict[str, Any]] = []
    for ci, kappa in enumerate(curvatures):
        for di, name in enumerate(dtypes):
            rng = np.random.default_rng([seed, ci, di])
            r, red, cols = _trace_one(kappa, name, rng, n_points, dim, center_fraction)
            rows += r
            reductions.append(red)
            for key in _COLUMNS:
                columns[key] += cols[key]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), out)
    values = [v for r in reductions for v in (r["reduction"], r["reduction_textbook_finite"])]
    finite = [v for v in values if not math.isnan(v)]
    return OvershootTrace(rows, reductions, out, min(finite) if finite else math.nan)


def round_trip_max_error(
    k: float, dtype: str, *, seeds: Sequence[int] = (0, 1, 2), n_points: int = 1000, dim: int = 16
) -> float:
    """Largest ``|exp₀(log₀(x)) − x|`` (any coordinate) of the stabilised maps over seeded points.

    Points are stored in ``dtype``; per seed half are uniform in hyperbolic radius and half near the
    boundary (``1 − √c‖x‖`` log-uniform in ``[margin, 1e-2]``, then :func:`~.poincare.project`, so
    the outermost lie exactly at ``max_norm``).
    """
    dt = np.dtype(dtype)
    worst = 0.0
    for seed in seeds:
        x = sample_ball(np.random.default_rng(seed), n_points, dim, k, dt)
        back = pb.expmap0(pb.logmap0(x, k=k), k=k)
        worst = max(worst, float(np.max(np.abs(back.astype(np.float64) - x.astype(np.float64)))))
    return worst


def sample_ball(rng: np.random.Generator, n: int, dim: int, k: float, dtype: Any) -> np.ndarray:
    """``n`` points of the ball stored in ``dtype``: half uniform in hyperbolic radius (up to
    ``1 − √c‖x‖ = 1e-2``), half with ``1 − √c‖x‖`` log-uniform in ``[margin/4, 1e-2]``, projected."""
    c = pb.curvature_c(k)
    dt = np.dtype(dtype)
    margin = pb.ball_margin(dt)
    half = n // 2
    near = _radius_of_delta(np.exp(rng.uniform(np.log(margin / 4), np.log(1e-2), n - half)), c)
    uniform = rng.uniform(0.0, float(_radius_of_delta(1e-2, c)), half).astype(_LD)
    points = _ball_point(_unit(rng, n, dim), np.concatenate([uniform, near]), c)
    return pb.project(points.astype(dt), k=k)
