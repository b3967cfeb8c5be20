r"""HAA — hyperbolic attention aggregation over a graph's neighbourhoods.

Each node's Euclidean vector ``e_v`` (Node2Vec, GraphWave, or the spectral fallback below) is mapped into
the Poincaré ball, ``x_v = exp₀(e_v)``. For node ``v`` with neighbours ``u`` (the stored entries of row ``v``
of the CSR adjacency; edge weights do not enter):

- attention ``α_vu = softmax_u(−d_κ(x_v, x_u)/τ) = exp(−d_vu/τ) / Σ_w exp(−d_vw/τ)``;
- ``haa(v)`` = the α-weighted gyromidpoint of the neighbours, Ungar's Einstein midpoint taken in the Klein
  model: with ``γ_u = (1 + c‖x_u‖²)/(1 − c‖x_u‖²)`` (the Lorentz factor of the Klein point
  ``k_u = 2x_u/(1 + c‖x_u‖²)``, written so it needs no ``1 − c‖k_u‖²``),

  ``m = Σ_u α_vu γ_u k_u / Σ_u α_vu γ_u = Σ_u α_vu λ_u x_u / Σ_u α_vu (λ_u − 1)``, ``λ_u = 2/(1 − c‖x_u‖²)``,

  mapped back to the ball by ``haa(v) = m / (1 + √(1 − c‖m‖²))`` (equivalently ``½ ⊗ m``, the Poincaré
  form of the same midpoint), then projected. One neighbour gives that neighbour; points placed
  symmetrically about the origin with equal weights give the origin.
- an isolated node (empty row) keeps its own point: ``haa(v) = x_v``.

Everything is vectorised over the CSR arrays: distances per edge (in chunks of edges), a segment softmax
over rows (``maximum.reduceat`` for the shift, ``bincount`` for the sums) and one sparse product for the
midpoints. The attention comes back as a CSR matrix with the adjacency's own ``indptr``/``indices``,
so ``attention.data[i]`` belongs to ``adjacency.indices[i]`` and row ``v`` lists ``v``'s neighbours with
their weights (what ``/explain/{node}`` shows).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.linalg
import scipy.sparse as sp

from wavegraph.processors.graph import poincare as pb

__all__ = [
    "HAAResult",
    "attention_table",
    "build_adjacency",
    "haa",
    "haa_from_edges",
    "poincare_from_edges",
    "spectral_embedding",
]

_CHUNK_VALUES = 1 << 22  # edges × dim handled per distance chunk (32 MiB of float64)


@dataclass(frozen=True)
class HAAResult:
    """``points`` (x_v = exp₀(e_v)), ``haa`` (n×d, inside the ball) and per-edge ``attention`` (CSR)."""

    points: np.ndarray
    haa: np.ndarray
    attention: sp.csr_matrix


def haa(
    adjacency: Any,
    embeddings: Any,
    *,
    k: float = -1.0,
    tau: float = 1.0,
    in_ball: bool = False,
) -> HAAResult:
    """Hyperbolic attention aggregation of every node (see the module docstring for the formulas).

    ``adjacency``: an n×n scipy.sparse matrix (CSR, or converted to CSR), row ``v`` = ``v``'s neighbours
    (every stored entry counts, duplicates twice). ``embeddings``: n×d Euclidean vectors, mapped by
    ``exp₀``; pass ``in_ball=True`` when they already are ball points (they are then only projected).
    The outputs keep the embeddings' float dtype (float64 for integer input); internals are float64.
    """
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    c = pb.curvature_c(k)
    a = sp.csr_matrix(adjacency)
    e = np.asarray(embeddings)
    if e.ndim != 2 or a.shape != (e.shape[0], e.shape[0]):
        raise ValueError(f"need an n×n adjacency and n×d embeddings, got {a.shape} and {e.shape}")
    points = pb.project(e, k=k) if in_ball else pb.expmap0(e, k=k)
    x = points.astype(np.float64)
    n = x.shape[0]
    indptr, cols = a.indptr, a.indices
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(n), counts)

    alpha = _segment_softmax(-_edge_distances(x, rows, cols, k) / tau, indptr, rows, n)

    complement = np.maximum(1.0 - c * np.sum(x * x, axis=1), np.finfo(np.float64).epsneg)
    lam = 2.0 / complement  # λ_u
    gamma = (2.0 - complement) / complement  # λ_u − 1 = (1 + c‖x_u‖²)/(1 − c‖x_u‖²)
    numerator = sp.csr_matrix((alpha * lam[cols], cols, indptr), shape=(n, n)) @ x
    denominator = np.bincount(rows, weights=alpha * gamma[cols], minlength=n)

    out = x.copy()  # isolated nodes keep their own point
    has = counts > 0
    m = numerator[has] / denominator[has, None]
    out[has] = m / (1.0 + np.sqrt(np.maximum(1.0 - c * np.sum(m * m, axis=1, keepdims=True), 0.0)))
    attention = sp.csr_matrix((alpha, cols.copy(), indptr.copy()), shape=(n, n))
    return HAAResult(points=points, haa=pb.project(out, k=k).astype(points.dtype), attention=attention)


def _edge_distances(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: float) -> np.ndarray:
    """``d_κ(x_v, x_u)`` for every stored edge, computed in chunks to bound memory."""
    d = np.empty(rows.size, dtype=np.float64)
    step = max(1, _CHUNK_VALUES // max(1, x.shape[1]))
    for start in range(0, rows.size, step):
        sl = slice(start, start + step)
        d[sl] = pb.dist(x[rows[sl]], x[cols[sl]], k=k)
    return d


def _segment_softmax(logits: np.ndarray, indptr: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Softmax of ``logits`` within each CSR row (shifted by the row maximum; sums are ≥ 1)."""
    if logits.size == 0:
        return logits
    starts = indptr[:-1][np.diff(indptr) > 0]
    row_max = np.zeros(n)
    row_max[rows[starts]] = np.maximum.reduceat(logits, starts)
    w = np.exp(logits - row_max[rows])
    return w / np.bincount(rows, weights=w, minlength=n)[rows]


# ------------------------------------------------------------------------------ spectral fallback


def spectral_embedding(adjacency: Any, dim: int = 8, *, seed: int = 0, iterations: int = 40) -> np.ndarray:
    r"""Deterministic spectral embedding for graphs that come without vectors (n×dim, float64).

    The eigenvectors of the ``dim`` smallest non-trivial eigenvalues of the normalised Laplacian
    ``L = I − D^{-1/2} A D^{-1/2}`` of the symmetrised ``|A| + |A|ᵀ``, the first (trivial) one dropped:
    exact (dense ``eigh``) up to 1,000 nodes; above that, a seeded block power iteration on
    ``(I + D^{-1/2} A D^{-1/2})/2`` (``iterations`` steps, ``dim + 9`` columns, then Rayleigh–Ritz),
    whose cost is bounded (``eigsh`` took minutes on 100,000-node random and scale-free graphs whose
    low Laplacian spectrum is clustered) and which converges to the same vectors where the spectrum has
    gaps. Each vector's sign is fixed so its largest-magnitude entry is positive, rows are scaled to a
    mean norm of 1 (so ``exp₀`` spreads them over the ball), columns beyond ``n − 1`` are zero and
    isolated nodes sit at 0.
    """
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    n = a.shape[0]
    out = np.zeros((n, dim))
    if n < 2 or dim < 1:
        return out
    a = abs(a)
    a = (a + a.T).tocsr()
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros(n)
    inv_sqrt[deg > 0] = 1.0 / np.sqrt(deg[deg > 0])
    m = (sp.diags(inv_sqrt) @ a @ sp.diags(inv_sqrt)).tocsr()  # top eigenvectors of m = bottom ones of L
    want = min(dim + 1, n)
    if n <= 1000:
        values, vectors = np.linalg.eigh(m.toarray())
    else:
        q = np.random.default_rng(seed).standard_normal((n, want + 8))
        for _ in range(iterations):
            q = _orthonormal(0.5 * (q + m @ q))
        values, ritz = np.linalg.eigh(q.T @ (m @ q))
        vectors = q @ ritz
    order = np.argsort(-values, kind="stable")[1:want]
    vec = vectors[:, order]
    vec[deg == 0] = 0.0  # an isolated node's indicator is an eigenvector too; keep such nodes at 0
    signs = np.sign(vec[np.argmax(np.abs(vec), axis=0), np.arange(vec.shape[1])])
    vec = vec * np.where(signs == 0, 1.0, signs)
    norms = np.linalg.norm(vec, axis=1)
    scale = float(norms[norms > 0].mean()) if (norms > 0).any() else 1.0
    out[:, : vec.shape[1]] = vec / scale
    return out


def _orthonormal(q: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``q``: Cholesky-QR twice (one small Gram matrix per pass; LAPACK's
    Householder QR of a tall matrix was ten times slower here), Householder QR if the Gram is singular."""
    try:
        for _ in range(2):
            chol = np.linalg.cholesky(q.T @ q)
            q = q @ scipy.linalg.solve_triangular(chol, np.eye(chol.shape[0]), lower=True).T
    except np.linalg.LinAlgError:
        q, _r = np.linalg.qr(q)
    return q


# --------------------------------------------------------------------------------- edge-list entry


def build_adjacency(
    edges: Iterable[Sequence[Any]], *, directed: bool = False
) -> tuple[list[str], sp.csr_matrix]:
    """Node ids (sorted, as strings) and the 0/1 CSR adjacency of ``(src, dst[, weight])`` rows.

    Ids are compared as strings; duplicate edges are merged; self-loops are dropped (a node is not its
    own neighbour); ``directed=False`` adds every edge in both directions. Weights are ignored (the
    attention depends on distances only).
    """
    pairs = [(str(e[0]), str(e[1])) for e in edges]
    node_ids = sorted({v for pair in pairs for v in pair})
    index = {v: i for i, v in enumerate(node_ids)}
    src = np.fromiter((index[s] for s, _ in pairs), dtype=np.int64, count=len(pairs))
    dst = np.fromiter((index[d] for _, d in pairs), dtype=np.int64, count=len(pairs))
    keep = src != dst
    src, dst = src[keep], dst[keep]
    if not directed:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    n = len(node_ids)
    a = sp.csr_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    a.sum_duplicates()
    a.data[:] = 1.0
    return node_ids, a


def _node_vectors(
    node_ids: Sequence[str], adjacency: sp.csr_matrix, embeddings: Mapping[Any, Any] | None, dim: int
) -> np.ndarray:
    if embeddings is None:
        return spectral_embedding(adjacency, dim)
    vectors = {str(key): value for key, value in embeddings.items()}
    missing = [v for v in node_ids if v not in vectors]
    if missing:
        raise ValueError(f"no embedding for {len(missing)} node(s), e.g. {missing[:3]}")
    return np.stack([np.asarray(vectors[v], dtype=np.float64) for v in node_ids])


def haa_from_edges(
    edges: Iterable[Sequence[Any]],
    embeddings: Mapping[Any, Any] | None = None,
    *,
    curvature: float = -1.0,
    tau: float = 1.0,
    dim: int = 8,
    directed: bool = False,
) -> tuple[list[str], np.ndarray, sp.csr_matrix]:
    """``(node_ids, haa, attention)`` for an edge list: what ``wavegraph graph haa`` writes.

    ``edges``: ``(src, dst[, weight])`` rows (see :func:`build_adjacency`). ``embeddings``: node id →
    Euclidean vector; without it a :func:`spectral_embedding` of ``dim`` columns is used. ``haa[i]`` and
    row ``i`` of ``attention`` belong to ``node_ids[i]`` (use :func:`attention_table` for a flat table).
    """
    node_ids, adjacency = build_adjacency(edges, directed=directed)
    vectors = _node_vectors(node_ids, adjacency, embeddings, dim)
    result = haa(adjacency, vectors, k=curvature, tau=tau)
    return node_ids, result.haa, result.attention


def poincare_from_edges(
    edges: Iterable[Sequence[Any]],
    embeddings: Mapping[Any, Any] | None = None,
    *,
    curvature: float = -1.0,
    dim: int = 8,
    center: str | None = None,
    directed: bool = False,
) -> tuple[list[str], np.ndarray]:
    """``(node_ids, points)``: the nodes' Poincaré embeddings ``exp₀(e_v)``, what ``graph poincare`` writes.

    Vectors as in :func:`haa_from_edges`; with ``center`` (a node id) every point is recentered so that
    node sits at the origin (``x ↦ (−x_center) ⊕ x``).
    """
    node_ids, adjacency = build_adjacency(edges, directed=directed)
    points = pb.expmap0(_node_vectors(node_ids, adjacency, embeddings, dim), k=curvature)
    if center is not None:
        if center not in node_ids:
            raise ValueError(f"center node {center!r} is not in the edge list")
        points = pb.recenter(points, points[node_ids.index(center)], k=curvature)
    return node_ids, points


def attention_table(node_ids: Sequence[str], attention: sp.csr_matrix) -> pa.Table:
    """The attention as a flat table ``(src, dst, weight)``, one row per stored edge, in CSR order."""
    counts = np.diff(attention.indptr)
    ids = np.asarray(node_ids, dtype=object)
    return pa.table(
        {
            "src": pa.array(ids[np.repeat(np.arange(len(node_ids)), counts)].tolist(), pa.string()),
            "dst": pa.array(ids[attention.indices].tolist(), pa.string()),
            "weight": pa.array(attention.data, pa.float64()),
        }
    )
