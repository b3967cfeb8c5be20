"""HAA: attention per edge and the weighted gyromidpoint, checked against a per-node loop and the
hyperboloid (Lorentz) centroid written here independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from wavegraph.processors.graph import poincare as pb
from wavegraph.processors.graph.haa import (
    attention_table,
    build_adjacency,
    haa,
    haa_from_edges,
    poincare_from_edges,
    spectral_embedding,
)

CURVATURES = [-1.0, -0.5, -2.0]


def random_graph(rng: np.random.Generator, n: int, m: int) -> sp.csr_matrix:
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    a = sp.csr_matrix((np.ones(m), (src, dst)), shape=(n, n))
    a = ((a + a.T) > 0).astype(np.float64).tocsr()
    a.setdiag(0)
    a.eliminate_zeros()
    return a


def closed_form_dist(x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    num = 2 * c * np.sum((x - y) ** 2, -1)
    return np.arccosh(1 + num / ((1 - c * np.sum(x * x, -1)) * (1 - c * np.sum(y * y, -1)))) / math.sqrt(c)


def lorentz_midpoint(points: np.ndarray, weights: np.ndarray, c: float) -> np.ndarray:
    """Weighted centroid on the hyperboloid ⟨X,X⟩_L = −1/c, renormalised, mapped back to the ball."""
    s = np.sum(points * points, -1)
    x0 = (1 + c * s) / (math.sqrt(c) * (1 - c * s))
    xv = 2 * points / (1 - c * s)[:, None]
    m0, mv = weights @ x0, weights @ xv
    scale = 1 / math.sqrt(c * (m0 * m0 - mv @ mv))  # back onto the hyperboloid
    m0, mv = m0 * scale, mv * scale
    return mv / (1 + math.sqrt(c) * m0)  # hyperboloid → ball


@pytest.mark.parametrize("k", CURVATURES)
@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_matches_a_per_node_reference(k: float, tau: float) -> None:
    c = -k
    rng = np.random.default_rng(1)
    a = random_graph(rng, 60, 200)
    e = rng.standard_normal((60, 5)) * 0.8
    result = haa(a, e, k=k, tau=tau)
    x = pb.expmap0(e, k=k)
    np.testing.assert_array_equal(result.points, x)
    np.testing.assert_array_equal(result.attention.indptr, a.indptr)
    np.testing.assert_array_equal(result.attention.indices, a.indices)
    for v in range(60):
        nbrs = a.indices[a.indptr[v] : a.indptr[v + 1]]
        if nbrs.size == 0:
            np.testing.assert_allclose(result.haa[v], x[v])
            continue
        logits = -closed_form_dist(x[v][None, :], x[nbrs], c) / tau
        w = np.exp(logits - logits.max())
        w /= w.sum()
        np.testing.assert_allclose(result.attention.data[a.indptr[v] : a.indptr[v + 1]], w, rtol=1e-9)
        np.testing.assert_allclose(result.haa[v], lorentz_midpoint(x[nbrs], w, c), atol=1e-10)


def test_weights_sum_to_one_and_nearer_neighbours_weigh_more() -> None:
    # node 0's neighbours lie along one ray at growing distance from node 0 (the origin)
    e = np.zeros((6, 3))
    e[1:, 0] = [0.1, 0.4, 0.9, 1.5, 2.5]
    a = sp.csr_matrix((np.ones(5), (np.zeros(5, int), np.arange(1, 6))), shape=(6, 6))
    result = haa(a + a.T, e, tau=0.7)
    row0 = result.attention[0].toarray().ravel()[1:]
    assert np.all(np.diff(row0) < 0)
    sums = np.asarray(result.attention.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums, 1.0, rtol=1e-12)
    assert (result.attention.data > 0).all()


def test_single_neighbour_and_symmetric_neighbours() -> None:
    rng = np.random.default_rng(4)
    e = rng.standard_normal((6, 4))
    e[3] = -e[2]  # node 0's neighbours 2 and 3 are mirror images ...
    e[0] = 0.0  # ... and node 0 sits at the origin, so both get the same weight
    e[5] = -e[4]
    rows = [0, 0, 1, 4, 5]
    cols = [2, 3, 4, 5, 4]
    a = sp.csr_matrix((np.ones(5), (rows, cols)), shape=(6, 6))
    result = haa(a, e)
    x = result.points
    np.testing.assert_allclose(result.haa[1], x[4], atol=1e-12)  # one neighbour: that neighbour
    np.testing.assert_allclose(result.haa[0], 0.0, atol=1e-12)  # symmetric pair: the origin
    np.testing.assert_allclose(result.attention[0, 2], 0.5)
    np.testing.assert_allclose(result.haa[2], x[2])  # isolated (no out-edges): own point


@pytest.mark.parametrize("k", CURVATURES)
def test_output_inside_the_ball_for_far_out_embeddings(k: float) -> None:
    rng = np.random.default_rng(9)
    a = random_graph(rng, 300, 1500)
    for dtype in ("float32", "float64"):
        e = (rng.standard_normal((300, 8)) * 30).astype(dtype)  # exp₀ saturates: points at max_norm
        result = haa(a, e, k=k)
        assert result.haa.dtype == np.dtype(dtype)
        assert np.isfinite(result.haa).all() and np.isfinite(result.attention.data).all()
        norms = np.linalg.norm(result.haa.astype(np.longdouble), axis=1)
        assert (norms < 1 / np.sqrt(np.longdouble(-k))).all()


def test_rejects_bad_arguments() -> None:
    a = sp.identity(3, format="csr")
    with pytest.raises(ValueError, match="tau"):
        haa(a, np.zeros((3, 2)), tau=0.0)
    with pytest.raises(ValueError, match="n×n"):
        haa(a, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="curvature"):
        haa(a, np.zeros((3, 2)), k=1.0)


def test_from_edges_with_and_without_embeddings() -> None:
    edges = [("a", "b"), ("b", "c", 2.0), ("c", "a"), ("c", "d"), ("d", "d"), ("a", "b")]
    ids, adjacency = build_adjacency(edges)
    assert ids == ["a", "b", "c", "d"]
    assert adjacency.nnz == 8 and adjacency[3, 3] == 0  # merged duplicate, dropped self-loop, both ways
    ids, h, att = haa_from_edges(edges)
    assert h.shape == (4, 8) and att.shape == (4, 4)
    np.testing.assert_allclose(np.asarray(att.sum(axis=1)).ravel(), 1.0)
    table = attention_table(ids, att)
    assert table.column_names == ["src", "dst", "weight"] and table.num_rows == 8
    assert table.column("src").to_pylist()[:2] == ["a", "a"]
    vectors = {"a": [0.1, 0.0], "b": [0.0, 0.2], "c": [-0.3, 0.1], "d": [0.5, 0.5]}
    ids2, h2, _ = haa_from_edges(edges, vectors, curvature=-0.5, tau=2.0)
    assert ids2 == ids and h2.shape == (4, 2)
    # d has the single neighbour c
    np.testing.assert_allclose(h2[3], pb.expmap0(np.array([-0.3, 0.1]), k=-0.5), atol=1e-12)
    with pytest.raises(ValueError, match="no embedding"):
        haa_from_edges(edges, {"a": [0.0, 0.0]})
    ids3, points = poincare_from_edges(edges, vectors, center="b")
    np.testing.assert_allclose(points[ids3.index("b")], 0.0, atol=1e-15)


def test_spectral_embedding_is_deterministic_and_spectral() -> None:
    # four dense blocks, sparsely linked: the low Laplacian spectrum has a gap after 4 eigenvalues
    rng = np.random.default_rng(0)
    n, blocks = 1200, 4  # > 1000 nodes: the block power iteration path
    label = np.repeat(np.arange(blocks), n // blocks)
    src, dst = rng.integers(0, n, 40000), rng.integers(0, n, 40000)
    keep = (label[src] == label[dst]) | (rng.random(40000) < 0.02)
    a = sp.csr_matrix((np.ones(keep.sum()), (src[keep], dst[keep])), shape=(n, n))
    emb = spectral_embedding(a, dim=3)
    np.testing.assert_array_equal(emb, spectral_embedding(a, dim=3))
    assert emb.shape == (n, 3)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1).mean(), 1.0)
    # the embedding spans the same space as the exact eigenvectors 2..4 of I − D^-1/2 A D^-1/2
    s = (a + a.T).tocsr()
    d = sp.diags(1 / np.sqrt(np.asarray(s.sum(axis=1)).ravel()))
    values, vectors = spla.eigsh(d @ s @ d, k=4, which="LA", tol=1e-12)  # the gap makes ARPACK quick
    exact = vectors[:, np.argsort(-values)[1:4]]
    q, _ = np.linalg.qr(emb)
    assert np.linalg.svd(q.T @ exact, compute_uv=False).min() > 0.999
    # and separates the blocks
    centroids = np.stack([emb[label == b].mean(axis=0) for b in range(blocks)])
    assert np.linalg.matrix_rank(centroids - centroids.mean(axis=0), tol=1e-3) == 3


def test_spectral_embedding_small_graphs() -> None:
    tiny = spectral_embedding(sp.csr_matrix(np.array([[0, 1], [1, 0]])), dim=4)
    assert tiny.shape == (2, 4) and np.isfinite(tiny).all()
    assert (tiny[:, 1:] == 0).all()
    isolated = spectral_embedding(sp.csr_matrix((5, 5)), dim=2)
    assert (isolated == 0).all()
