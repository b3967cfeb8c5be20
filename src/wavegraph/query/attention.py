r"""The HAA attention of one node over its neighbours, recomputed from stored embeddings.

The graph job aggregates node ``v``'s neighbours with ``α_vu = softmax_u(−d_κ(x_v, x_u)/τ)``
(:func:`wavegraph.processors.graph.haa.haa`). ``/v1/explain`` shows those weights again, computed by
the same function on a star graph (``v`` joined to each neighbour).

The Poincaré distance depends on the two points only through ``‖x_v‖``, ``‖x_u‖`` and ``⟨x_v, x_u⟩``
(``d = arcosh(1 + 2c‖x−y‖²/((1−c‖x‖²)(1−c‖y‖²)))/√c``, ``‖x−y‖² = ‖x‖² + ‖y‖² − 2⟨x, y⟩``). So the database
returns three numbers per neighbour instead of a 64-d vector, and :func:`star_attention` rebuilds
2-D points with the same norms and inner products: ``x_v' = (a, 0)``, ``x_u' = (g/a, √(b² − g²/a²))``
(``x_u' = (b, 0)`` when ``x_v`` is the origin). The weights are those of the stored vectors up to
float32 rounding of the inner products (pgvector accumulates in float32: measured |Δα| < 1e-6 on the
Les Misérables graph, 64-d).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from wavegraph.processors.graph.haa import haa

__all__ = ["star_attention"]

_ORIGIN = 1e-12  # below this norm the explained node counts as the origin


def star_attention(
    center_norm: float,
    dots: npt.ArrayLike,
    norms: npt.ArrayLike,
    *,
    curvature: float = -1.0,
    temperature: float = 1.0,
) -> npt.NDArray[np.float64]:
    """``α_vu`` for each neighbour ``u`` (same order as ``dots``/``norms``), summing to 1.

    ``center_norm`` = ``‖x_v‖``; ``dots[i]`` = ``⟨x_v, x_{u_i}⟩``; ``norms[i]`` = ``‖x_{u_i}‖`` (stored
    Poincaré points, inside the ball). No neighbour gives an empty array.
    """
    g = np.asarray(dots, dtype=np.float64).ravel()
    b = np.asarray(norms, dtype=np.float64).ravel()
    if g.shape != b.shape:
        raise ValueError(f"dots and norms differ in length: {g.size} and {b.size}")
    m = g.size
    if m == 0:
        return np.zeros(0)
    a = float(center_norm)
    points = np.zeros((m + 1, 2))
    if a < _ORIGIN:
        points[1:, 0] = b
    else:
        p = np.clip(g / a, -b, b)
        points[0, 0] = a
        points[1:, 0] = p
        points[1:, 1] = np.sqrt(np.maximum(b * b - p * p, 0.0))
    star = sp.csr_matrix((np.ones(m), np.arange(1, m + 1), np.r_[0, np.full(m + 1, m)]), shape=(m + 1, m + 1))
    result = haa(star, points, k=curvature, tau=temperature, in_ball=True)
    return np.asarray(result.attention.data[:m], dtype=np.float64)
