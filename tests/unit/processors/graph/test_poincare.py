"""Poincaré-ball maps: round trips per dtype, finiteness at the boundary, gyrovector identities, and
distances checked against definitions computed here independently (hyperboloid model, closed form)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavegraph.processors.graph import poincare as pb

CURVATURES = [-1.0, -0.5, -2.0]
SEEDS = [0, 1, 2]
DIM = 8


def ball_points(rng: np.random.Generator, n: int, k: float, dtype: str = "float64") -> np.ndarray:
    """Points stored in ``dtype``: half spread over the ball, half within 1e-2 (relative) of the boundary,
    the outermost pushed onto the boundary and then projected (the extreme valid points of the dtype)."""
    c = -k
    g = rng.standard_normal((n, DIM))
    direction = g / np.linalg.norm(g, axis=1, keepdims=True)
    half = n // 2
    rel = np.concatenate([rng.uniform(0.0, 0.99, half), 1 - 10 ** rng.uniform(-20, -2, n - half)])
    rel[-5:] = 1.0  # exactly on the boundary before projection
    return pb.project((direction * rel[:, None] / math.sqrt(c)).astype(dtype), k=k)


def moderate_points(rng: np.random.Generator, n: int, k: float) -> np.ndarray:
    g = rng.standard_normal((n, DIM))
    direction = g / np.linalg.norm(g, axis=1, keepdims=True)
    return direction * rng.uniform(0.0, 0.9, (n, 1)) / math.sqrt(-k)


def textbook_mobius(x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    xy = np.sum(x * y, -1, keepdims=True)
    x2 = np.sum(x * x, -1, keepdims=True)
    y2 = np.sum(y * y, -1, keepdims=True)
    return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c * c * x2 * y2)


def lorentz_dist(x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    """Distance on the hyperboloid ⟨X,X⟩_L = −1/c, X = ((1 + c‖x‖²)/(√c(1 − c‖x‖²)), 2x/(1 − c‖x‖²))."""

    def lift(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.sum(p * p, -1)
        return (1 + c * s) / (math.sqrt(c) * (1 - c * s)), 2 * p / (1 - c * s)[..., None]

    x0, xv = lift(x)
    y0, yv = lift(y)
    return np.arccosh(np.maximum(c * (x0 * y0 - np.sum(xv * yv, -1)), 1.0)) / math.sqrt(c)


def closed_form_dist(x: np.ndarray, y: np.ndarray, c: float | np.floating) -> np.ndarray:
    num = 2 * c * np.sum((x - y) ** 2, -1)
    den = (1 - c * np.sum(x * x, -1)) * (1 - c * np.sum(y * y, -1))
    return np.arccosh(1 + num / den) / math.sqrt(c)


# ------------------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("k", CURVATURES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("dtype", "tol"), [("float16", 1e-3), ("float32", 1e-6), ("float64", 1e-12)])
def test_round_trip_exp0_log0(k: float, seed: int, dtype: str, tol: float) -> None:
    x = ball_points(np.random.default_rng(seed), 2000, k, dtype)
    back = pb.expmap0(pb.logmap0(x, k=k), k=k)
    assert back.dtype == np.dtype(dtype)
    err = np.abs(back.astype(np.float64) - x.astype(np.float64))
    assert np.isfinite(err).all()
    assert err.max() <= tol


@pytest.mark.parametrize("k", CURVATURES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_project_keeps_points_strictly_inside(k: float, dtype: str) -> None:
    rng = np.random.default_rng(7)
    g = rng.standard_normal((4000, DIM))
    direction = g / np.linalg.norm(g, axis=1, keepdims=True)
    scale = np.concatenate([np.ones(1000), 1 - 10 ** rng.uniform(-20, -1, 1000), rng.uniform(1, 3, 2000)])
    x = (direction * scale[:, None] / math.sqrt(-k)).astype(dtype)
    p = pb.project(x, k=k)
    assert p.dtype == np.dtype(dtype)
    exact = np.linalg.norm(p.astype(np.longdouble), axis=1)
    assert (exact < 1 / np.sqrt(np.longdouble(-k))).all()
    assert (exact <= np.longdouble(pb.max_norm(k, dtype)) * (1 + 4 * np.finfo(dtype).eps)).all()
    # points already inside the margin are untouched
    half = x[:2000] * np.asarray(0.5, dtype=dtype)
    np.testing.assert_array_equal(pb.project(half, k=k), half)


def test_margin_is_representable_in_float16() -> None:
    assert np.float16(1 - 1e-6) == np.float16(1.0)  # why the margin is per dtype
    limit = np.float16(pb.max_norm(-1.0, "float16"))
    assert limit < np.float16(1.0)


@pytest.mark.parametrize("k", CURVATURES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_results_stay_finite_on_and_beyond_the_boundary(k: float, dtype: str) -> None:
    rng = np.random.default_rng(3)
    g = rng.standard_normal((50, DIM))
    d = g / np.linalg.norm(g, axis=1, keepdims=True)
    big = float(np.finfo(dtype).max) ** 0.5
    raw = np.concatenate([d / math.sqrt(-k), 1.5 * d / math.sqrt(-k), np.zeros((1, DIM))]).astype(dtype)
    tangents = np.concatenate([d * big, d * 1e-4, d * 40.0, np.zeros((1, DIM))]).astype(dtype)
    outputs = [
        pb.logmap0(raw, k=k),
        pb.expmap0(tangents, k=k),
        pb.expmap0(pb.logmap0(raw, k=k), k=k),
        pb.mobius_add(raw, raw[::-1], k=k),
        pb.recenter(raw, raw[:1], k=k),
        pb.dist(raw, raw[::-1], k=k),
        pb.expmap(pb.project(raw, k=k), tangents[: len(raw)], k=k),
        pb.logmap(pb.project(raw, k=k), pb.project(raw[::-1], k=k), k=k),
        pb.artanh(np.array([-1.0, 1.0, 2.0], dtype=dtype)),
        pb.conformal_factor(raw, k=k),
    ]
    for out in outputs:
        assert out.dtype == np.dtype(dtype)
        assert np.isfinite(out.astype(np.float64)).all()
    for ball in (outputs[1], outputs[2], outputs[3], outputs[4], outputs[6]):
        assert (np.linalg.norm(ball.astype(np.longdouble), axis=1) < 1 / np.sqrt(np.longdouble(-k))).all()


def test_curvature_must_be_negative() -> None:
    for k in (0.0, 1.0, math.nan, -math.inf):
        with pytest.raises(ValueError, match="curvature"):
            pb.expmap0(np.zeros(3), k=k)


# ---------------------------------------------------------------------------------------- gyrovectors


@pytest.mark.parametrize("k", CURVATURES)
def test_mobius_add_identities(k: float) -> None:
    rng = np.random.default_rng(11)
    x, y = moderate_points(rng, 200, k), moderate_points(rng, 200, k)
    zero = np.zeros_like(x)
    np.testing.assert_allclose(pb.mobius_add(zero, x, k=k), x, atol=1e-15)
    np.testing.assert_allclose(pb.mobius_add(x, zero, k=k), x, atol=1e-15)
    np.testing.assert_allclose(pb.mobius_add(-x, x, k=k), zero, atol=1e-15)
    np.testing.assert_allclose(pb.mobius_add(-x, pb.mobius_add(x, y, k=k), k=k), y, atol=1e-12)
    np.testing.assert_allclose(pb.mobius_add(x, y, k=k), textbook_mobius(x, y, -k), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k", CURVATURES)
def test_dist_matches_independent_definitions(k: float) -> None:
    c = -k
    rng = np.random.default_rng(5)
    x, y = moderate_points(rng, 300, k), moderate_points(rng, 300, k)
    d = pb.dist(x, y, k=k)
    np.testing.assert_allclose(d, pb.dist(y, x, k=k), rtol=1e-14)
    via_mobius = (
        2 / math.sqrt(c) * np.arctanh(math.sqrt(c) * np.linalg.norm(textbook_mobius(-x, y, c), axis=-1))
    )
    np.testing.assert_allclose(d, via_mobius, rtol=1e-10)
    np.testing.assert_allclose(d, lorentz_dist(x, y, c), rtol=1e-8)
    np.testing.assert_allclose(d, closed_form_dist(x, y, c), rtol=1e-8)
    origin = pb.dist(np.zeros_like(x), x, k=k)
    np.testing.assert_allclose(
        origin, 2 / math.sqrt(c) * np.arctanh(math.sqrt(c) * np.linalg.norm(x, axis=-1))
    )
    np.testing.assert_allclose(pb.dist(x, x, k=k), 0.0, atol=1e-15)


def test_dist_stays_accurate_between_far_out_points() -> None:
    """Two float64 points 1e-12 from the boundary: compare with the closed form in longdouble.

    ``1 − ‖x‖²`` in float64 keeps ~4 digits here (1e-16/2e-12), so 1e-5 is the honest tolerance; the
    Möbius-artanh form would give ``inf`` (‖(−x) ⊕ y‖ rounds to 1)."""
    rng = np.random.default_rng(2)
    g = rng.standard_normal((100, 2, DIM))
    p = g / np.linalg.norm(g, axis=-1, keepdims=True) * (1 - 1e-12)
    x, y = p[:, 0], p[:, 1]
    exact = closed_form_dist(x.astype(np.longdouble), y.astype(np.longdouble), np.longdouble(1.0))
    np.testing.assert_allclose(pb.dist(x, y, k=-1.0), exact.astype(np.float64), rtol=1e-5)


@pytest.mark.parametrize("k", CURVATURES)
def test_recenter_is_an_isometry_that_sends_the_centre_to_zero(k: float) -> None:
    rng = np.random.default_rng(13)
    x, y = moderate_points(rng, 200, k), moderate_points(rng, 200, k)
    a = moderate_points(rng, 1, k)
    np.testing.assert_allclose(pb.recenter(a, a, k=k), 0.0, atol=1e-15)
    before = pb.dist(x, y, k=k)
    after = pb.dist(pb.recenter(x, a, k=k), pb.recenter(y, a, k=k), k=k)
    np.testing.assert_allclose(after, before, rtol=1e-9)
    np.testing.assert_allclose(
        lorentz_dist(pb.recenter(x, a, k=k), pb.recenter(y, a, k=k), -k), before, rtol=1e-8
    )
    np.testing.assert_allclose(pb.mobius_add(a, pb.recenter(x, a, k=k), k=k), x, atol=1e-12)


@pytest.mark.parametrize("k", CURVATURES)
def test_maps_at_a_point(k: float) -> None:
    rng = np.random.default_rng(17)
    x, y = moderate_points(rng, 200, k), moderate_points(rng, 200, k)
    u = rng.standard_normal((200, DIM)) * 0.2  # d(x, exp_x(u)) stays well inside float64's range
    np.testing.assert_allclose(pb.expmap(np.zeros_like(u), u, k=k), pb.expmap0(u, k=k), atol=1e-15)
    np.testing.assert_allclose(pb.logmap(np.zeros_like(x), x, k=k), pb.logmap0(x, k=k), rtol=1e-12)
    np.testing.assert_allclose(pb.expmap(x, pb.logmap(x, y, k=k), k=k), y, atol=1e-10)
    lam = pb.conformal_factor(x, k=k)[:, 0]
    v = pb.logmap(x, y, k=k)
    # the Riemannian length of log_x(y) is d(x, y); exp_x(u) lies at distance λ_x‖u‖ from x
    np.testing.assert_allclose(lam * np.linalg.norm(v, axis=-1), pb.dist(x, y, k=k), rtol=1e-10)
    step = pb.expmap(x, u, k=k)
    np.testing.assert_allclose(lorentz_dist(x, step, -k), lam * np.linalg.norm(u, axis=-1), rtol=1e-7)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_artanh_is_clamped_per_dtype(dtype: str) -> None:
    out = pb.artanh(np.array([-1.0, 0.0, 0.5, 1.0], dtype=dtype))
    assert np.isfinite(out).all()
    assert out[2] == pytest.approx(math.atanh(0.5), rel=float(np.finfo(dtype).eps) * 4)
    assert out[3] == -out[0] > 3.0


# ------------------------------------------------------------------------------------------------ gpu


def _cupy_with_device() -> object:
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no usable CUDA device: {exc}")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("k", CURVATURES)
def test_cupy_matches_numpy(k: float) -> None:
    cp = _cupy_with_device()
    rng = np.random.default_rng(21)
    x, y = ball_points(rng, 500, k), ball_points(rng, 500, k)
    u = rng.standard_normal((500, DIM))
    xg, yg, ug = cp.asarray(x), cp.asarray(y), cp.asarray(u)  # type: ignore[attr-defined]
    assert pb.get_array_module(xg) is cp
    pairs = [
        (pb.expmap0(u, k=k), pb.expmap0(ug, k=k)),
        (pb.logmap0(x, k=k), pb.logmap0(xg, k=k)),
        (pb.mobius_add(x, y, k=k), pb.mobius_add(xg, yg, k=k)),
        (pb.recenter(x, y[:1], k=k), pb.recenter(xg, yg[:1], k=k)),
        (pb.dist(x, y, k=k), pb.dist(xg, yg, k=k)),
        (pb.expmap(x, u, k=k), pb.expmap(xg, ug, k=k)),
        (pb.logmap(x, y, k=k), pb.logmap(xg, yg, k=k)),
        (pb.project(3 * x, k=k), pb.project(3 * xg, k=k)),
    ]
    for cpu, gpu in pairs:
        np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=1e-9, atol=1e-12)
