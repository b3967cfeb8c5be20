"""The (p, q) search: the wall-clock stop rule under a patched clock, best_pq.json and its dataset hash,
and the link-prediction split."""

from __future__ import annotations

import hashlib
from pathlib import Path

import networkx as nx
import numpy as np
import orjson
import pytest
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph

from wavegraph.processors.graph import pq_search as ps
from wavegraph.processors.graph.node2vec import Node2VecConfig
from wavegraph.processors.graph.state import GraphState, dataset_hash

TINY = Node2VecConfig(dim=8, walk_length=8, walks_per_node=2, window=3, epochs=1, seed=0)


class FakeClock:
    """A monotonic clock that advances ``step`` seconds every time it is read."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        self.now += self.step
        self.reads += 1
        return self.now


def _state(graph: nx.Graph) -> GraphState:
    edges = sorted(graph.edges(data="weight", default=1.0))
    return GraphState.from_edges(
        [str(u) for u, _, _ in edges],
        [str(v) for _, v, _ in edges],
        np.array([w for _, _, w in edges], float),
    )


DATASETS = {
    "karate": lambda: nx.karate_club_graph(),
    "les_miserables": lambda: nx.les_miserables_graph(),
    "synthetic_ws": lambda: nx.connected_watts_strogatz_graph(60, 4, 0.1, seed=3),
}


@pytest.mark.parametrize("step", [3.0, 4.0])
def test_patched_clock_stops_after_exactly_two_trials(tmp_path: Path, step: float) -> None:
    clock = FakeClock(step)
    result = ps.search_pq(
        _state(nx.karate_club_graph()),
        max_minutes=0.1,
        out=tmp_path / "best_pq.json",
        config=TINY,
        clock=clock,
    )
    assert len(result.trials) == 2
    assert result.stopped == "budget"
    assert clock.reads == 3  # once at the start, once after each trial
    assert result.elapsed_s == pytest.approx(2 * step)
    written = orjson.loads((tmp_path / "best_pq.json").read_bytes())
    assert len(written["trials"]) == 2
    assert (written["trials"][0]["p"], written["trials"][0]["q"]) == (1.0, 1.0)  # the baseline goes first


def test_a_long_budget_runs_the_whole_grid(tmp_path: Path) -> None:
    grid = [(1.0, 1.0), (0.5, 2.0), (2.0, 0.5)]
    result = ps.search_pq(
        _state(nx.karate_club_graph()), max_minutes=60, out=tmp_path / "b.json", grid=grid, config=TINY,
        clock=FakeClock(1.0),
    )  # fmt: skip
    assert result.stopped == "grid_exhausted"
    assert [(t.p, t.q) for t in result.trials] == grid
    assert result.score == max(t.score for t in result.trials)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_best_pq_json_exists_and_carries_the_dataset_hash(tmp_path: Path, name: str) -> None:
    """Fails when best_pq.json is absent or its hash does not match the dataset it was computed on."""
    state = _state(DATASETS[name]())
    out = tmp_path / "best_pq.json"
    result = ps.search_pq(state, max_minutes=0.1, out=out, config=TINY, clock=FakeClock(4.0))

    assert out.is_file(), "best_pq.json was not written"
    data = orjson.loads(out.read_bytes())
    # The hash, recomputed here from its definition: sha256 of the canonical sorted edge list.
    canonical = sorted((s, d, float(w)) for s, d, w in state.edges())
    expected = hashlib.sha256(orjson.dumps(canonical)).hexdigest()
    assert data["dataset_hash"] == expected == dataset_hash(state) == result.dataset_hash
    assert data["metric"] == "auc"
    assert {"p", "q", "score", "trials"} <= data.keys()
    assert (data["p"], data["q"], data["score"]) == (result.p, result.q, result.score)
    assert 0.0 <= data["score"] <= 1.0
    assert ps.load_best_pq(out, state)["p"] == result.p


def test_load_best_pq_rejects_a_missing_file_or_another_dataset(tmp_path: Path) -> None:
    karate, lesmis = _state(nx.karate_club_graph()), _state(nx.les_miserables_graph())
    out = tmp_path / "best_pq.json"
    with pytest.raises(ps.BestPQMismatch, match="no such file"):
        ps.load_best_pq(out, karate)
    ps.search_pq(karate, max_minutes=0.01, out=out, config=TINY, clock=FakeClock(4.0))
    assert ps.load_best_pq(out, karate)["metric"] == "auc"
    with pytest.raises(ps.BestPQMismatch, match="dataset"):
        ps.load_best_pq(out, lesmis)
    out.write_text("{}")
    with pytest.raises(ps.BestPQMismatch, match=r"not a best_pq\.json"):
        ps.load_best_pq(out, karate)


def test_split_keeps_components_and_samples_true_negatives() -> None:
    graph = nx.les_miserables_graph()
    a = sp.csr_matrix(nx.to_scipy_sparse_array(graph, weight="weight"))
    split = ps.split_edges(a, test_fraction=0.2, seed=4)
    m = graph.number_of_edges()
    assert len(split.positives) == len(split.negatives) == round(0.2 * m)
    assert split.train.nnz == 2 * (m - len(split.positives))
    assert (split.train != split.train.T).nnz == 0
    assert csgraph.connected_components(split.train)[0] == csgraph.connected_components(a)[0]
    full = a.toarray() > 0
    assert full[split.positives[:, 0], split.positives[:, 1]].all()
    assert not split.train.toarray()[split.positives[:, 0], split.positives[:, 1]].any()
    assert not full[split.negatives[:, 0], split.negatives[:, 1]].any()
    assert (split.negatives[:, 0] < split.negatives[:, 1]).all()
    assert len({tuple(x) for x in split.negatives.tolist()}) == len(split.negatives)
    again = ps.split_edges(a, test_fraction=0.2, seed=4)
    assert np.array_equal(again.positives, split.positives) and np.array_equal(
        again.negatives, split.negatives
    )


def test_node2vec_predicts_held_out_links_better_than_chance() -> None:
    a = sp.csr_matrix(nx.to_scipy_sparse_array(nx.les_miserables_graph(), weight="weight"))
    split = ps.split_edges(a, test_fraction=0.15, seed=0)
    from wavegraph.processors.graph.node2vec import node2vec_embed

    emb = node2vec_embed(split.train, p=1.0, q=0.5, config=Node2VecConfig(dim=32, walks_per_node=10, seed=0))
    assert ps.link_auc(emb, split) > 0.75


def test_default_grid_starts_with_the_baseline_and_covers_every_pair() -> None:
    grid = ps.default_grid(seed=1)
    assert grid[0] == (1.0, 1.0)
    assert sorted(grid) == sorted((p, q) for p in ps.DEFAULT_VALUES for q in ps.DEFAULT_VALUES)
    assert ps.default_grid(seed=1) == grid != ps.default_grid(seed=2)


def test_bad_budget_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_minutes"):
        ps.search_pq(_state(nx.karate_club_graph()), max_minutes=0, out=None)


def test_node2vec_from_edges_takes_p_q_from_a_matching_best_pq_only(tmp_path: Path) -> None:
    from wavegraph.processors.graph.pq_search import node2vec_from_edges
    from wavegraph.processors.graph.state import read_edge_list

    path = tmp_path / "karate.csv"
    path.write_text("src,dst\n" + "".join(f"{u},{v}\n" for u, v in nx.karate_club_graph().edges()))
    edges = read_edge_list(path)
    best = tmp_path / "best_pq.json"
    result = ps.search_pq(edges, max_minutes=0.01, out=best, config=TINY, clock=FakeClock(4.0))
    ids, vectors, used = node2vec_from_edges(edges, config=TINY, best_pq=best)
    assert used == (result.p, result.q)
    assert vectors.shape == (34, TINY.dim) and sorted(ids, key=int) == [str(i) for i in range(34)]
    other = tmp_path / "other.csv"
    other.write_text("a,b\nb,c\n")
    with pytest.raises(ps.BestPQMismatch):
        node2vec_from_edges(read_edge_list(other), config=TINY, best_pq=best)
