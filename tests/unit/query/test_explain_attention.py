"""star_attention: the graph job's HAA weights from norms and inner products alone; the explain order."""

from __future__ import annotations

import numpy as np
import pytest

from wavegraph.processors.graph import poincare as pb
from wavegraph.processors.graph.haa import build_adjacency, haa
from wavegraph.query.attention import star_attention
from wavegraph.query.explain import by_attention


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("k", "tau"), [(-1.0, 1.0), (-0.5, 0.3), (-2.0, 2.0)])
def test_matches_haa_on_the_full_vectors(seed: int, k: float, tau: float) -> None:
    rng = np.random.default_rng(seed)
    n, dim = 30, 16
    edges = [(str(i), str(j)) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.3]
    ids, adjacency = build_adjacency(edges)
    points = pb.expmap0(rng.standard_normal((len(ids), dim)) * 0.7, k=k)
    full = haa(adjacency, points, k=k, tau=tau, in_ball=True).attention
    for v in range(len(ids)):
        row = full.getrow(v)
        got = star_attention(
            float(np.linalg.norm(points[v])),
            points[row.indices] @ points[v],
            np.linalg.norm(points[row.indices], axis=1),
            curvature=k,
            temperature=tau,
        )
        np.testing.assert_allclose(got, row.data, atol=1e-12)
        if row.nnz:
            assert got.sum() == pytest.approx(1.0)


def test_a_center_at_the_origin_and_no_neighbours() -> None:
    got = star_attention(0.0, [0.0, 0.0], [0.1, 0.5])
    assert got[0] > got[1] and got.sum() == pytest.approx(1.0)  # the nearer neighbour weighs more
    assert star_attention(0.3, [], []).size == 0
    with pytest.raises(ValueError, match="differ"):
        star_attention(0.3, [0.1], [])


def test_neighbours_tied_but_for_float_noise_go_by_id() -> None:
    """Weights equal but for their last bits (float32 embeddings of nodes in the same position) are a
    tie, ordered by id whatever the noise; a real difference, however small against the weights, orders
    by weight; neighbours without a weight come last, by id."""
    base = 0.0397150123
    noisy = {"Labarre": base * (1 + 3e-8), "Gervais": base, "Isabeau": base * (1 - 2e-8)}
    other = {"Myriel": 0.05, "Fauchelevent": base * (1 - 1e-3), "Cosette": base * (1 + 1e-3)}
    weights = {**noisy, **other}
    ids = [*weights, "Zed", "Able"]
    expected = ["Myriel", "Cosette", "Gervais", "Isabeau", "Labarre", "Fauchelevent", "Able", "Zed"]
    assert by_attention(ids, weights) == expected
    flipped = {**other, "Labarre": base * (1 - 3e-8), "Gervais": base * (1 + 1e-8), "Isabeau": base}
    assert by_attention(list(reversed(ids)), flipped) == expected
