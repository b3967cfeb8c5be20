r"""Poincaré-ball geometry with curvature κ < 0, guarded for floating point.

The ball of curvature κ is ``B = {x : ‖x‖ < 1/√c}`` with ``c = |κ|``. Every public function states its
formula in the docstring and calls a guarded internal one (``_expmap0`` ...). Internals work in float64
whatever the input dtype and round once to the input's dtype at the end (followed by :func:`project` for
maps into the ball): a float32 vector can hold points far closer to the boundary than ``1 − eps32``
(its squared norm is a sum of many finer-grained squares), and only a wider accumulator sees that.

Guards, and why:

- ``1 − c‖x‖²`` (which sets the conformal factor ``λ_x = 2/(1 − c‖x‖²)``) is where a near-boundary point
  loses its digits; it is accumulated in float64 and floored at float64's ``epsneg`` so it never reaches 0.
- Möbius addition is evaluated in the cancellation-free form
  ``x ⊕ y = ((1 − c‖x‖²)·s + c‖s‖²·x) / (c‖s‖² + (1 − c‖x‖²)(1 − c‖y‖²))`` with ``s = x + y``, which is
  algebraically the textbook formula but adds only non-negative terms in the denominator (the textbook
  ``1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖²`` cancels catastrophically when both points are far out and close together).
- the distance is evaluated as ``(2/√c)·arsinh(√c‖x − y‖/√((1 − c‖x‖²)(1 − c‖y‖²)))``: no ``artanh``
  of a Möbius difference whose norm rounds to 1.
- ``artanh`` is clamped to the largest argument below 1 (per dtype in the public :func:`artanh`, float64's
  inside the maps); tangent-vector norms are taken after an exact power-of-two rescaling (no
  overflow); every map into the ball ends with :func:`project`, whose margin is representable in the
  dtype (``1 − 1e-6`` is ``1.0`` in float16).

All functions take and return arrays of the module ``xp`` of their input: NumPy, or CuPy for CuPy arrays
(the same code, an array-module switch). Points are rows along the last axis.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any, TypeAlias

import numpy as np

__all__ = [
    "Array",
    "artanh",
    "ball_margin",
    "conformal_factor",
    "curvature_c",
    "dist",
    "expmap",
    "expmap0",
    "get_array_module",
    "logmap",
    "logmap0",
    "max_norm",
    "mobius_add",
    "project",
    "recenter",
]

Array: TypeAlias = Any
"""A NumPy or CuPy ndarray (CuPy has no type stubs)."""

_WORK = np.dtype(np.float64)
_FLOOR = float(np.finfo(np.float64).epsneg)  # smallest positive 1 − t (t < 1) in float64


@functools.cache
def _cupy() -> ModuleType | None:
    try:
        import cupy
    except Exception:
        return None
    return cupy


def get_array_module(*arrays: object) -> ModuleType:
    """``cupy`` when CuPy is importable and one of ``arrays`` is a CuPy array, else ``numpy``."""
    cp = _cupy()
    if cp is not None and any(isinstance(a, cp.ndarray) for a in arrays):
        return cp
    return np


# ------------------------------------------------------------------------------------ dtypes, margins


def curvature_c(k: float) -> float:
    """``c = |κ|`` after checking that ``κ`` is finite and negative (``ValueError`` otherwise)."""
    if not (math.isfinite(k) and k < 0):
        raise ValueError(f"the Poincaré ball needs a finite curvature k < 0, got {k!r}")
    return -float(k)


def _work(xp: ModuleType, *arrays: object) -> tuple[list[Array], np.dtype[Any]]:
    """The arrays in float64, and the dtype to store results in (the widest float input, else float64)."""
    arrs = [xp.asarray(a) for a in arrays]
    floats = [np.dtype(a.dtype) for a in arrs if a.dtype.kind == "f"]
    store = np.result_type(*floats) if floats else _WORK
    return [a.astype(_WORK, copy=False) for a in arrs], np.dtype(store)


def ball_margin(dtype: Any) -> float:
    """Relative margin kept inside the boundary by :func:`project`: ``finfo(dtype).eps`` (4·eps for float64).

    ``max_norm = (1 − margin)/√c`` is then at least two units in the last place below the boundary, so it
    is representable (in float16 ``1 − 1e-6`` rounds to ``1.0``), and a float16/float32 point scaled onto
    it in float64 stays strictly inside after its one rounding; float64 points get two roundings (the
    scale factor and the product), hence the wider float64 margin.
    """
    dt = np.dtype(dtype)
    eps = float(np.finfo(dt).eps)
    return 4.0 * eps if dt == np.float64 else eps


def max_norm(k: float, dtype: Any) -> float:
    """The largest Euclidean norm :func:`project` lets a point of ``dtype`` keep: ``(1 − margin)/√c``."""
    return (1.0 - ball_margin(dtype)) / math.sqrt(curvature_c(k))


# -------------------------------------------------------------------------------------------- norms


def _sqnorm(xp: ModuleType, x: Array) -> Array:
    return xp.sum(x * x, axis=-1, keepdims=True)


def _norm(xp: ModuleType, x: Array) -> Array:
    """Euclidean norm along the last axis, floored at float64's smallest normal number."""
    return xp.maximum(xp.sqrt(_sqnorm(xp, x)), np.finfo(_WORK).tiny)


def _tangent_norm(xp: ModuleType, u: Array) -> Array:
    """Norm of tangent vectors of any size: rescaled by an exact power of two so ``u·u`` cannot overflow."""
    big = xp.max(xp.abs(u), axis=-1, keepdims=True)
    _, e = xp.frexp(xp.where(big > 0, big, 1.0))
    scaled = xp.ldexp(u, -e)
    return xp.maximum(xp.ldexp(xp.sqrt(_sqnorm(xp, scaled)), e), np.finfo(_WORK).tiny)


def _complement(xp: ModuleType, x: Array, c: float) -> Array:
    """``1 − c‖x‖²`` (float64 accumulation), floored at float64's ``epsneg`` so it is never 0 or negative."""
    return xp.maximum(1.0 - c * _sqnorm(xp, x), _FLOOR)


# --------------------------------------------------------------------------------------- projection


def project(x: Array, *, k: float = -1.0) -> Array:
    r"""Pull points back inside the ball: ``x ↦ x · min(1, max_norm/‖x‖)``, ``max_norm = (1 − m)/√c``.

    ``m`` is the per-dtype margin of :func:`ball_margin`; the norm is taken in float64, so the stored
    result has ``‖x‖ < 1/√c`` also when measured exactly. Non-finite input is passed through unchanged.
    """
    xp = get_array_module(x)
    (a,), store = _work(xp, x)
    return _project(xp, a, curvature_c(k), store)


def _project(xp: ModuleType, x: Array, c: float, store: np.dtype[Any]) -> Array:
    """Scale float64 ``x`` onto the ball of ``store`` and round it to ``store`` (the only rounding)."""
    n = _norm(xp, x)
    limit = (1.0 - ball_margin(store)) / math.sqrt(c)
    return (x * xp.where(n > limit, limit / n, 1.0)).astype(store)


def artanh(x: Array) -> Array:
    r"""``artanh(x) = ½·ln((1 + x)/(1 − x))`` with ``x`` clamped to ``±(1 − ε)``, ``ε = finfo(dtype).epsneg``.

    ``1 − epsneg`` is the largest number below 1 in the dtype, so the result is finite (≈ 8.7 in
    float32, ≈ 4.2 in float16, ≈ 18.7 in float64) where the unclamped function gives ``inf`` or ``nan``.
    """
    xp = get_array_module(x)
    (a,), store = _work(xp, x)
    hi = 1.0 - float(np.finfo(store).epsneg)
    return xp.arctanh(xp.clip(a, -hi, hi)).astype(store)


def conformal_factor(x: Array, *, k: float = -1.0) -> Array:
    r"""``λ_x = 2 / (1 − c‖x‖²)``, the factor of the metric ``g_x = λ_x² g_E`` (shape ``(..., 1)``).

    Capped at the dtype's largest finite number (float16 cannot hold λ beyond 65504).
    """
    xp = get_array_module(x)
    (a,), store = _work(xp, x)
    lam = 2.0 / _complement(xp, a, curvature_c(k))
    return xp.minimum(lam, float(np.finfo(store).max)).astype(store)


# --------------------------------------------------------------------------------------- origin maps


def expmap0(u: Array, *, k: float = -1.0) -> Array:
    r"""Exponential map at the origin: ``exp₀(u) = tanh(√c‖u‖) · u / (√c‖u‖)``.

    ``exp₀(0) = 0``; the result is projected, so a saturated ``tanh = 1`` lands at ``max_norm`` of the
    dtype, not on the boundary.
    """
    xp = get_array_module(u)
    (a,), store = _work(xp, u)
    c = curvature_c(k)
    return _project(xp, _expmap0(xp, a, c), c, store)


def _expmap0(xp: ModuleType, u: Array, c: float) -> Array:
    sc = math.sqrt(c)
    n = _tangent_norm(xp, u)
    return (u / n) * (xp.tanh(xp.minimum(sc * n, 64.0)) / sc)


def logmap0(y: Array, *, k: float = -1.0) -> Array:
    r"""Logarithmic map at the origin: ``log₀(y) = artanh(√c‖y‖) · y / (√c‖y‖)``.

    The inverse of :func:`expmap0`. The norm is taken in float64 and ``artanh`` clamped below 1, so
    points on or beyond the boundary give a finite tangent vector; ``artanh`` of the computed norm (not
    an algebraically equal ``arsinh`` form) keeps ``exp₀(log₀(y))`` consistent: ``tanh`` returns the same
    rounded norm. Returns a tangent vector (not projected).
    """
    xp = get_array_module(y)
    (a,), store = _work(xp, y)
    return _logmap0(xp, a, curvature_c(k)).astype(store)


def _logmap0(xp: ModuleType, y: Array, c: float) -> Array:
    sc = math.sqrt(c)
    n = _norm(xp, y)
    return (y / n) * (xp.arctanh(xp.minimum(sc * n, 1.0 - _FLOOR)) / sc)


# ------------------------------------------------------------------------------------ gyrovector ops


def mobius_add(x: Array, y: Array, *, k: float = -1.0) -> Array:
    r"""Möbius addition ``x ⊕_κ y``.

    ``x ⊕ y = ((1 + 2c⟨x,y⟩ + c‖y‖²)·x + (1 − c‖x‖²)·y) / (1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖²)``,

    evaluated as the equal, cancellation-free
    ``((1 − c‖x‖²)·s + c‖s‖²·x) / (c‖s‖² + (1 − c‖x‖²)(1 − c‖y‖²))`` with ``s = x + y``; projected.
    Identities: ``0 ⊕ x = x ⊕ 0 = x``, ``(−x) ⊕ x = 0``, ``(−x) ⊕ (x ⊕ y) = y`` (left cancellation).
    """
    xp = get_array_module(x, y)
    (a, b), store = _work(xp, x, y)
    c = curvature_c(k)
    return _project(xp, _mobius_add(xp, a, b, c), c, store)


def _mobius_add(xp: ModuleType, x: Array, y: Array, c: float) -> Array:
    s = x + y
    cs2 = c * _sqnorm(xp, s)
    bx = _complement(xp, x, c)
    return (bx * s + cs2 * x) / (cs2 + bx * _complement(xp, y, c))


def recenter(x: Array, a: Array, *, k: float = -1.0) -> Array:
    r"""Möbius translation that sends ``a`` to the origin: ``x ↦ (−a) ⊕ x``.

    An isometry of the ball: ``d(recenter(x, a), recenter(y, a)) = d(x, y)`` and ``recenter(a, a) = 0``;
    its inverse is ``y ↦ a ⊕ y``. ``a`` broadcasts against ``x`` (one centre for many points).
    """
    xp = get_array_module(x, a)
    (p, q), store = _work(xp, x, a)
    c = curvature_c(k)
    return _project(xp, _mobius_add(xp, -q, p, c), c, store)


# ----------------------------------------------------------------------------------- maps at a point


def expmap(x: Array, u: Array, *, k: float = -1.0) -> Array:
    r"""Exponential map at ``x``: ``exp_x(u) = x ⊕ (tanh(√c λ_x ‖u‖ / 2) · u / (√c‖u‖))``.

    With ``λ_x = 2/(1 − c‖x‖²)``; at ``x = 0`` this is :func:`expmap0`. Projected.
    """
    xp = get_array_module(x, u)
    (a, v), store = _work(xp, x, u)
    c = curvature_c(k)
    sc = math.sqrt(c)
    n = _tangent_norm(xp, v)
    t = xp.minimum(n * (sc / _complement(xp, a, c)), 64.0)  # √c λ_x ‖u‖ / 2; tanh(64) = 1
    return _project(xp, _mobius_add(xp, a, (v / n) * (xp.tanh(t) / sc), c), c, store)


def logmap(x: Array, y: Array, *, k: float = -1.0) -> Array:
    r"""Logarithmic map at ``x``: ``log_x(y) = (2/(√c λ_x)) · artanh(√c‖w‖) · w/‖w‖``, ``w = (−x) ⊕ y``.

    The inverse of :func:`expmap` at ``x``; its length is ``(1 − c‖x‖²)/2 · d(x, y)``, computed with the
    stable form of :func:`dist`; the direction comes from the unprojected ``w``. Not projected.
    """
    xp = get_array_module(x, y)
    (a, b), store = _work(xp, x, y)
    c = curvature_c(k)
    w = _mobius_add(xp, -a, b, c)
    length = 0.5 * _complement(xp, a, c) * _dist(xp, a, b, c)
    return ((w / _norm(xp, w)) * length).astype(store)


def dist(x: Array, y: Array, *, k: float = -1.0) -> Array:
    r"""Geodesic distance ``d_κ(x, y) = (2/√c) · artanh(√c ‖(−x) ⊕ y‖)``.

    Evaluated as the equal ``(2/√c) · arsinh(√c‖x − y‖ / √((1 − c‖x‖²)(1 − c‖y‖²)))`` (also equal to
    ``arcosh(1 + 2c‖x − y‖²/((1 − c‖x‖²)(1 − c‖y‖²)))/√c``), which needs no ``artanh`` near 1 and so stays
    accurate between points near the boundary. The last axis is reduced.
    """
    xp = get_array_module(x, y)
    (a, b), store = _work(xp, x, y)
    return _dist(xp, a, b, curvature_c(k))[..., 0].astype(store)


def _dist(xp: ModuleType, x: Array, y: Array, c: float) -> Array:
    sc = math.sqrt(c)
    ratio = xp.sqrt(_sqnorm(xp, x - y) / (_complement(xp, x, c) * _complement(xp, y, c)))
    return (2.0 / sc) * xp.arcsinh(sc * ratio)
