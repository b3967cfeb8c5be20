"""GraphWave: Chebyshev vs exact eigendecomposition, structural roles, scales, CPU vs GPU."""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, homogeneity_score
from sklearn.preprocessing import StandardScaler

from wavegraph.errors import MissingPrerequisite
from wavegraph.processors.graph import graphwave as gw
from wavegraph.processors.graph.state import GraphState, read_edge_list


def _adjacency(graph: nx.Graph) -> sp.csr_matrix:
    return sp.csr_matrix(nx.to_scipy_sparse_array(graph, nodelist=sorted(graph), weight="weight"))


def roles_graph(n_pairs: int = 4, spacing: int = 6, star_leaves: int = 4) -> tuple[nx.Graph, list[str]]:
    """The paper's synthetic benchmark: a cycle with houses and stars attached alternately, every
    ``spacing`` cycle nodes. Houses hang by their roof, so the graph has a dihedral symmetry and the role
    labels below are exactly its automorphism orbits (same role ⇒ identical embedding)."""
    g = nx.Graph()
    roles: dict[int, str] = {}
    m = 2 * n_pairs * spacing
    for i in range(m):
        g.add_edge(i, (i + 1) % m)
        offset = i % (2 * spacing)  # distance along the cycle from the previous house anchor
        roles[i] = f"cycle{min(offset, 2 * spacing - offset) if offset > spacing else offset}"
    nxt = m
    for j in range(2 * n_pairs):
        anchor = j * spacing
        if j % 2 == 0:  # house: roof r, upper corners a b, lower corners c d
            r, a, b, c, d = range(nxt, nxt + 5)
            nxt += 5
            g.add_edges_from([(anchor, r), (r, a), (r, b), (a, b), (a, c), (b, d), (c, d)])
            roles.update({r: "roof", a: "upper", b: "upper", c: "lower", d: "lower"})
        else:
            centre = nxt
            nxt += 1
            g.add_edge(anchor, centre)
            roles[centre] = "centre"
            for _ in range(star_leaves):
                g.add_edge(centre, nxt)
                roles[nxt] = "leaf"
                nxt += 1
    return g, [roles[i] for i in range(nxt)]


SMALL_GRAPHS = {
    "karate": nx.karate_club_graph(),
    "lesmis_weighted": nx.convert_node_labels_to_integers(nx.les_miserables_graph()),
    "path40": nx.path_graph(40),
    "houses": roles_graph()[0],
}


@pytest.mark.parametrize("name", sorted(SMALL_GRAPHS))
@pytest.mark.parametrize("scales", [(0.5, 2.0), (5.0, 20.0)])
def test_chebyshev_wavelets_match_exact_eigendecomposition(name: str, scales: tuple[float, ...]) -> None:
    a = _adjacency(SMALL_GRAPHS[name])
    exact = gw.heat_wavelets_exact(a, scales)
    approx = gw.heat_wavelets(a, scales, tol=1e-10)
    assert np.linalg.norm(approx - exact) / np.linalg.norm(exact) < 1e-5


@pytest.mark.parametrize("name", sorted(SMALL_GRAPHS))
def test_embedding_matches_exact_on_sparse_dense_and_batched_paths(name: str) -> None:
    a = _adjacency(SMALL_GRAPHS[name])
    scales = (1.0, 4.0)
    exact = gw.graphwave_exact(a, scales)
    for kwargs in ({}, {"dense_threshold": 0.0}, {"dense_threshold": 1.0, "batch_size": 7}):
        emb = gw.graphwave(a, scales=scales, **kwargs)  # type: ignore[arg-type]
        assert emb.vectors.shape == (a.shape[0], 2 * 2 * 25)
        assert np.linalg.norm(emb.vectors - exact) / np.linalg.norm(exact) < 1e-5


def test_uneven_time_points_use_direct_trigonometry() -> None:
    a = _adjacency(nx.karate_club_graph())
    t = (0.5, 3.0, 10.0, 42.0)
    emb = gw.graphwave(a, scales=(2.0,), time_points=t)
    assert np.allclose(emb.vectors, gw.graphwave_exact(a, (2.0,), t), rtol=0, atol=1e-9)
    assert len(emb.columns) == emb.vectors.shape[1] == 8


@pytest.mark.parametrize("scale", [0.1, 1.0, 7.5, 30.0])
def test_chebyshev_order_bounds_the_truncation_error(scale: float) -> None:
    tol = 1e-7
    k = gw.chebyshev_order([scale], tol)
    c = gw.heat_chebyshev_coefficients(scale, k)
    x = np.linspace(-1.0, 1.0, 401)
    series = np.polynomial.chebyshev.chebval(x, c)
    assert np.abs(series - np.exp(-scale * (x + 1.0))).max() <= tol
    if k > 1:  # and one degree fewer is not enough for the bound
        tail = np.abs(gw.heat_chebyshev_coefficients(scale, k + 80)[k:]).sum()
        assert tail > tol


def test_auto_scales_follow_the_spectral_formula() -> None:
    a = _adjacency(nx.karate_club_graph())
    lam = np.linalg.eigvalsh(gw.normalized_laplacian(a).toarray())
    geo = math.sqrt(lam[1] * lam[-1])
    s = gw.auto_scales(a, n_scales=3, eta=0.85, gamma=0.95)
    assert s == pytest.approx(
        [-math.log(0.95) / geo, (-math.log(0.95) - math.log(0.85)) / 2 / geo, -math.log(0.85) / geo]
    )


def test_same_role_nodes_get_identical_embeddings_and_kmeans_recovers_roles() -> None:
    g, labels = roles_graph()
    y = np.unique(labels, return_inverse=True)[1]
    x = gw.graphwave(_adjacency(g), n_scales=3).vectors
    scale = np.abs(x).max()
    centroids = []
    for role in np.unique(y):
        block = x[y == role]
        assert np.abs(block - block[0]).max() < 1e-9 * scale  # same orbit ⇒ same embedding
        centroids.append(block[0])
    c = np.stack(centroids)
    gaps = np.linalg.norm(c[:, None] - c[None], axis=2)
    assert gaps[~np.eye(len(c), dtype=bool)].min() > 1e-3  # different roles stay apart
    z = PCA(n_components=10, random_state=0).fit_transform(StandardScaler().fit_transform(x))
    found = KMeans(n_clusters=len(c), n_init=10, random_state=0).fit_predict(z)
    assert adjusted_rand_score(y, found) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roles_survive_a_few_random_extra_edges(seed: int) -> None:
    """As in the paper's robustness experiment: add 2 % random edges, cluster, check homogeneity."""
    g, labels = roles_graph()
    rng = np.random.default_rng(seed)
    noisy = g.copy()
    nodes = np.array(sorted(g))
    for _ in range(max(1, int(0.02 * g.number_of_edges()))):
        u, v = rng.choice(nodes, 2, replace=False)
        noisy.add_edge(int(u), int(v))
    # Coarse roles: a structural role of each shape plus the two anchors; other cycle nodes together.
    coarse = [
        lab if not lab.startswith("cycle") or lab in ("cycle0", "cycle6") else "cycle" for lab in labels
    ]
    y = np.unique(coarse, return_inverse=True)[1]
    x = gw.graphwave(_adjacency(noisy), n_scales=3).vectors
    z = PCA(n_components=10, random_state=0).fit_transform(StandardScaler().fit_transform(x))
    found = KMeans(n_clusters=int(y.max()) + 1, n_init=10, random_state=0).fit_predict(z)
    assert homogeneity_score(y, found) >= 0.8


def test_isolated_nodes_and_components_stay_finite() -> None:
    g = nx.disjoint_union(nx.cycle_graph(6), nx.path_graph(4))
    g.add_node(99)
    emb = gw.graphwave(_adjacency(g), n_scales=2)
    assert np.isfinite(emb.vectors).all()
    iso = emb.vectors[-1]
    n_t = len(emb.time_points)
    # An isolated node's wavelet is its own indicator: phi(t) = ((N - 1) + e^{it}) / N.
    n = g.number_of_nodes()
    t = np.asarray(emb.time_points)
    assert np.allclose(iso[:n_t], (n - 1 + np.cos(t)) / n)
    assert np.allclose(iso[n_t : 2 * n_t], np.sin(t) / n)


def test_undirected_adjacency_of_a_graph_state_ignores_direction() -> None:
    state = GraphState.from_edges(["a", "b", "c"], ["b", "a", "a"], [2.0, 2.0, 1.0])
    a = gw.undirected_adjacency(state).toarray()
    assert np.array_equal(a, a.T)
    assert a[0, 1] == 2.0 and a[0, 2] == 1.0


def _gpu_available() -> bool:
    try:
        gw.array_backend("gpu")
    except MissingPrerequisite:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_gpu_matches_cpu() -> None:
    a = _adjacency(roles_graph()[0])
    cpu = gw.graphwave(a, n_scales=3, device="cpu").vectors
    gpu = gw.graphwave(a, n_scales=3, device="gpu").vectors
    assert np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu) < 1e-5
    dense_gpu = gw.graphwave(a, n_scales=3, device="gpu", dense_threshold=0.0).vectors
    assert np.linalg.norm(dense_gpu - cpu) / np.linalg.norm(cpu) < 1e-5


def test_gpu_request_without_cupy_names_the_fix() -> None:
    if _gpu_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(MissingPrerequisite):
        gw.graphwave(_adjacency(nx.path_graph(3)), scales=(1.0,), device="gpu")


def test_graphwave_from_edges_returns_ids_in_row_order(tmp_path: Path) -> None:
    path = tmp_path / "g.tsv"
    path.write_text("a\tb\nb\tc\nc\ta\nc\td\n")
    ids, emb = gw.graphwave_from_edges(read_edge_list(path), scales=(1.0, 3.0), time_points=(1.0, 2.0, 3.0))
    assert ids == ["a", "b", "c", "d"]
    assert emb.vectors.shape == (4, 12) and len(emb.columns) == 12
    # a and b are symmetric (both in the triangle, away from the pendant d)
    assert np.allclose(emb.vectors[0], emb.vectors[1])
    assert not np.allclose(emb.vectors[0], emb.vectors[2])
