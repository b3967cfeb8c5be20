"""Node2Vec walks: validity, determinism, second-order statistics against the definition; skip-gram."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import chisquare

from wavegraph.processors.graph import node2vec as nv


def _adjacency(graph: nx.Graph) -> sp.csr_matrix:
    return sp.csr_matrix(nx.to_scipy_sparse_array(graph, nodelist=sorted(graph), weight="weight"))


@pytest.fixture(scope="module")
def lesmis() -> nv.WalkGraph:
    """Les Misérables: weighted, with hubs, triangles and degree-1 nodes."""
    return nv.WalkGraph.from_adjacency(
        _adjacency(nx.convert_node_labels_to_integers(nx.les_miserables_graph()))
    )


def test_walks_follow_edges_and_do_not_depend_on_the_thread_count(lesmis: nv.WalkGraph) -> None:
    walks = nv.random_walks(lesmis, p=0.5, q=2.0, walk_length=12, walks_per_node=3, seed=7, workers=2)
    assert walks.shape == (3 * lesmis.n_nodes, 12)
    assert sorted(np.bincount(walks[:, 0]).tolist()) == [3] * lesmis.n_nodes  # every node starts 3 walks
    dense = np.zeros((lesmis.n_nodes, lesmis.n_nodes), dtype=bool)
    rows = np.repeat(np.arange(lesmis.n_nodes), np.diff(lesmis.indptr))
    dense[rows, lesmis.indices] = True
    assert dense[walks[:, :-1], walks[:, 1:]].all()
    again = nv.random_walks(lesmis, p=0.5, q=2.0, walk_length=12, walks_per_node=3, seed=7, workers=1)
    assert np.array_equal(walks, again)
    other = nv.random_walks(lesmis, p=0.5, q=2.0, walk_length=12, walks_per_node=3, seed=8)
    assert not np.array_equal(walks, other)


def _observed_next(
    graph: nv.WalkGraph, prev: int, cur: int, p: float, q: float, n: int, seed: int
) -> np.ndarray:
    """Counts of the node after ``prev → cur`` over ``n`` three-node walks forced through ``prev → cur``."""
    # A walk from `prev` steps to `cur` with first-order probability; keep the ones that did.
    walks = nv.random_walks(graph, p=p, q=q, walk_length=3, starts=np.full(n, prev, np.int32), seed=seed)
    walks = walks[walks[:, 1] == cur]
    nbrs = graph.indices[graph.indptr[cur] : graph.indptr[cur + 1]]
    return np.array([(walks[:, 2] == x).sum() for x in nbrs])


def _definition(graph: nv.WalkGraph, prev: int, cur: int, p: float, q: float) -> np.ndarray:
    """P(x | t=prev, v=cur) straight from the node2vec paper, over a dense weight matrix."""
    n = graph.n_nodes
    w = np.zeros((n, n))
    for u in range(n):  # cumweights restart at every row
        lo, hi = graph.indptr[u], graph.indptr[u + 1]
        w[u, graph.indices[lo:hi]] = np.diff(np.concatenate([[0.0], graph.cumweights[lo:hi]]))
    nbrs = np.flatnonzero(w[cur])
    alpha = np.array([1 / p if x == prev else (1.0 if w[prev, x] > 0 else 1 / q) for x in nbrs])
    unnorm = alpha * w[cur, nbrs]
    return unnorm / unnorm.sum()


@pytest.mark.parametrize(("p", "q"), [(1.0, 1.0), (0.25, 4.0), (4.0, 0.25), (0.01, 100.0), (100.0, 0.01)])
def test_second_order_transition_frequencies_match_the_definition(
    lesmis: nv.WalkGraph, p: float, q: float
) -> None:
    cur = int(np.argmax(np.diff(lesmis.indptr)))  # the hub (Valjean, 36 neighbours)
    nbrs = lesmis.indices[lesmis.indptr[cur] : lesmis.indptr[cur + 1]]
    for k, prev in enumerate(nbrs[:3].tolist()):
        expected = _definition(lesmis, prev, cur, p, q)
        assert np.allclose(expected, nv.transition_probabilities(lesmis, prev, cur, p, q))
        observed = _observed_next(lesmis, prev, cur, p, q, 60_000, seed=11 + k)
        total = observed.sum()
        assert total > 5_000
        sigma = np.sqrt(expected * (1 - expected) / total)
        assert (np.abs(observed / total - expected) <= 5 * sigma + 1e-4).all()
        big = expected * total >= 5  # pool rare outcomes for the chi-square test
        obs, exp = observed[big], expected[big] * total
        if (~big).any():
            obs, exp = np.append(obs, observed[~big].sum()), np.append(exp, expected[~big].sum() * total)
        assert chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 1e-3


def test_first_step_is_proportional_to_edge_weights(lesmis: nv.WalkGraph) -> None:
    cur = int(np.argmax(np.diff(lesmis.indptr)))
    walks = nv.random_walks(
        lesmis, p=0.3, q=3.0, walk_length=2, starts=np.full(80_000, cur, np.int32), seed=5
    )
    lo, hi = lesmis.indptr[cur], lesmis.indptr[cur + 1]
    w = np.diff(np.concatenate([[0.0], lesmis.cumweights[lo:hi]]))
    observed = np.array([(walks[:, 1] == x).sum() for x in lesmis.indices[lo:hi]])
    assert chisquare(observed, w / w.sum() * observed.sum()).pvalue > 1e-3


def _return_rate(walks: np.ndarray, degree: np.ndarray) -> float:
    """Share of steps taken from a node of degree ≥ 2 that go straight back to the previous node."""
    prev, cur, nxt = walks[:, :-2].ravel(), walks[:, 1:-1].ravel(), walks[:, 2:].ravel()
    free = degree[cur] >= 2
    return float((nxt[free] == prev[free]).mean())


def test_large_p_rarely_returns_small_p_mostly_returns() -> None:
    g = nv.WalkGraph.from_adjacency(_adjacency(nx.karate_club_graph()))
    degree = np.diff(g.indptr)
    rates = {
        p: _return_rate(nv.random_walks(g, p=p, q=1.0, walk_length=30, walks_per_node=20, seed=1), degree)
        for p in (1e6, 1.0, 1e-3)
    }
    assert rates[1e6] < 1e-3
    assert 0.05 < rates[1.0] < 0.5
    assert rates[1e-3] > 0.95


def test_small_q_explores_outward_large_q_stays_local() -> None:
    grid = nx.convert_node_labels_to_integers(nx.grid_2d_graph(30, 30), label_attribute="xy")
    g = nv.WalkGraph.from_adjacency(_adjacency(grid))
    xy = np.array([grid.nodes[i]["xy"] for i in range(grid.number_of_nodes())])

    def spread(q: float) -> float:
        walks = nv.random_walks(g, p=1.0, q=q, walk_length=20, walks_per_node=2, seed=3)
        return float(np.abs(xy[walks[:, -1]] - xy[walks[:, 0]]).sum(axis=1).mean())

    assert spread(0.25) > 1.5 * spread(4.0)


def test_dead_ends_are_padded_and_counted() -> None:
    a = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float))
    walks = nv.random_walks(a, walk_length=4, walks_per_node=1, seed=0)
    isolated = walks[walks[:, 0] == 2][0]
    assert isolated.tolist() == [2, -1, -1, -1]
    stats = nv.walk_throughput(a, walk_length=4, walks_per_node=2)
    assert stats.walks == 6 and stats.steps == 4 * 3  # 4 walks of 3 steps, 2 isolated walks of 0
    assert stats.walks_per_s > 0 and stats.steps_per_s > 0


def test_invalid_parameters_are_rejected() -> None:
    a = _adjacency(nx.path_graph(3))
    with pytest.raises(ValueError, match="p and q"):
        nv.random_walks(a, p=0.0)
    with pytest.raises(ValueError, match="walk_length"):
        nv.random_walks(a, walk_length=0)


def test_skipgram_embeddings_separate_karate_factions() -> None:
    karate = nx.karate_club_graph()
    config = nv.Node2VecConfig(dim=16, walk_length=20, walks_per_node=10, window=5, epochs=2, seed=1)
    emb = nv.node2vec_embed(_adjacency(karate), p=1.0, q=0.5, config=config)
    assert emb.shape == (34, 16) and np.isfinite(emb).all()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    club = np.array([karate.nodes[i]["club"] == "Mr. Hi" for i in range(34)])
    sim = unit @ unit.T
    within = (sim[np.ix_(club, club)].mean() + sim[np.ix_(~club, ~club)].mean()) / 2
    across = sim[np.ix_(club, ~club)].mean()
    assert within > across + 0.1


def test_gensim_seed_hash_is_process_independent() -> None:
    assert nv._stable_hash("abc") == 891_568_578  # CRC-32, not Python's salted str hash
