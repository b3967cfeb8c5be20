"""GraphState (batched CSR updates), the edge-list reader and the canonical dataset hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from wavegraph.errors import WavegraphError
from wavegraph.processors.graph import state as state_module
from wavegraph.processors.graph.state import (
    CSRGraph,
    EdgeList,
    EdgeListError,
    GraphState,
    TenantGraphs,
    dataset_hash,
    read_edge_list,
)


def dense(state: GraphState) -> np.ndarray:
    return state.to_csr().toarray()


def test_add_remove_and_snapshot() -> None:
    state = GraphState.from_edges(["a", "b", "a"], ["b", "c", "c"], [1.0, 2.0, 3.0])
    assert state.num_nodes == 3 and state.num_edges == 3
    assert list(state.node_ids) == ["a", "b", "c"]
    np.testing.assert_array_equal(dense(state), [[0, 1, 3], [0, 0, 2], [0, 0, 0]])
    snap = state.snapshot()
    assert snap.num_edges == 3
    np.testing.assert_array_equal(snap.out_weight, [4.0, 2.0, 0.0])

    change = state.remove_edges(["a", "x", "c"], ["b", "a", "a"])  # unknown ids / missing edges: no-op
    assert change.removed == 1 and change.changed_sources.tolist() == [state.index_of("a")]
    assert state.out_edges("a") == {"c": 3.0}
    # The earlier snapshot is untouched and read-only.
    np.testing.assert_array_equal(snap.to_scipy().toarray(), [[0, 1, 3], [0, 0, 2], [0, 0, 0]])
    with pytest.raises(ValueError, match="read-only"):
        snap.weights[0] = 5.0


def test_set_vs_accumulate_and_batch_duplicates() -> None:
    state = GraphState()
    change = state.add_edges(["a", "a", "a"], ["b", "b", "c"], [1.0, 5.0, 2.0])
    assert (change.added, change.updated) == (2, 0)
    assert state.out_edges("a") == {"b": 5.0, "c": 2.0}  # the last duplicate wins
    change = state.add_edges(["a"], ["b"], [7.0])
    assert (change.added, change.updated) == (0, 1)
    assert state.out_edges("a")["b"] == 7.0  # set, like DiGraph.add_edge
    state.add_edges(["a", "a"], ["b", "b"], [1.0, 2.0], accumulate=True)
    assert state.out_edges("a")["b"] == 10.0


def test_removing_the_last_edge_leaves_an_exactly_dangling_node() -> None:
    state = GraphState.from_edges(["a", "a", "a"], ["b", "c", "d"], [0.1, 0.2, 0.7])
    state.remove_edges(["a", "a"], ["b", "c"])
    state.remove_edges(["a"], ["d"])
    assert state.num_nodes == 4  # nodes are never removed
    assert state.snapshot().out_weight[state.index_of("a")] == 0.0


def test_apply_removes_then_adds() -> None:
    state = GraphState.from_edges(["a"], ["b"], [1.0])
    change = state.apply(remove=(["a"], ["b"]), add=(["a", "c"], ["b", "a"], [2.0, 1.0]))
    assert (change.removed, change.added, change.new_nodes) == (1, 2, 1)
    assert state.out_edges("a") == {"b": 2.0}
    assert sorted(change.changed_sources.tolist()) == [0, 2]


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_bad_weights_are_rejected(weight: float) -> None:
    with pytest.raises(EdgeListError, match="finite and >= 0"):
        GraphState.from_edges(["a"], ["b"], [weight])


def test_length_mismatch_is_rejected() -> None:
    state = GraphState()
    with pytest.raises(EdgeListError, match="lengths differ"):
        state.add_edges(["a", "b"], ["c"])
    with pytest.raises(EdgeListError, match="weight length"):
        state.add_edges(["a"], ["c"], [1.0, 2.0])
    assert issubclass(EdgeListError, WavegraphError)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_batches_match_a_dict_model(seed: int) -> None:
    rng = np.random.default_rng(seed)
    state = GraphState()
    model: dict[tuple[str, str], float] = {}
    for _ in range(30):
        k = int(rng.integers(1, 30))
        add_s = [f"n{i}" for i in rng.integers(0, 40, k)]
        add_d = [f"n{i}" for i in rng.integers(0, 40, k)]
        add_w = rng.integers(0, 4, k).astype(float)
        existing = list(model)
        picks: list[int] = (
            rng.integers(0, len(existing), int(rng.integers(0, 10))).tolist() if existing else []
        )
        rem = [existing[i] for i in picks] + [("n0", "n99")]
        before = state.snapshot()
        change = state.apply(remove=([s for s, _ in rem], [d for _, d in rem]), add=(add_s, add_d, add_w))
        for edge in rem:
            model.pop(edge, None)
        for s, d, w in zip(add_s, add_d, add_w.tolist(), strict=True):
            model[s, d] = w
        assert dict(((s, d), w) for s, d, w in state.edges()) == model
        snap = state.snapshot()
        expected_out = np.zeros(state.num_nodes)
        for (s, _), w in model.items():
            expected_out[state.index_of(s)] += w
        np.testing.assert_allclose(snap.out_weight, expected_out, rtol=0, atol=1e-12)
        # Rows outside changed_sources are identical before and after.
        same = np.setdiff1d(np.arange(before.num_nodes), change.changed_sources)
        a, b = before.to_scipy(), snap.to_scipy()[: before.num_nodes, : before.num_nodes]
        assert (a[same] != b[same]).nnz == 0


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "python"])
def test_merge_keeps_counts_accumulation_and_old_snapshots(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both forms of the merge pass (numba, and the plain-Python one used without numba): removals
    then insertions, an edge removed and added again in one batch counts as added (and accumulates
    from zero), updates keep their place, and every earlier snapshot keeps its arrays."""
    if not compiled:
        monkeypatch.setattr(state_module, "_merge", state_module._merge_loop)
    rng = np.random.default_rng(7)
    state = GraphState()
    model: dict[tuple[str, str], float] = {}
    kept: list[tuple[CSRGraph, np.ndarray, np.ndarray, np.ndarray]] = []
    for step in range(40):
        accumulate = step % 3 == 0
        k = int(rng.integers(0, 25))
        add_s = [f"n{i}" for i in rng.integers(0, 30, k)]
        add_d = [f"n{i}" for i in rng.integers(0, 30, k)]
        add_w = rng.integers(1, 5, k).astype(float)
        existing = sorted(model)
        rem = [existing[i] for i in rng.integers(0, len(existing), min(len(existing), 8)).tolist()]
        rem_set = set(rem)
        change = state.apply(
            remove=([s for s, _ in rem], [d for _, d in rem]),
            add=(add_s, add_d, add_w),
            accumulate=accumulate,
        )
        for edge in rem_set:
            del model[edge]
        batch: dict[tuple[str, str], float] = {}
        for s, d, w in zip(add_s, add_d, add_w.tolist(), strict=True):
            batch[s, d] = batch.get((s, d), 0.0) + w if accumulate else w
        updated = sum(1 for e in batch if e in model)
        for e, w in batch.items():
            model[e] = model.get(e, 0.0) + w if accumulate else w
        assert (change.removed, change.added, change.updated) == (
            len(rem_set),
            len(batch) - updated,
            updated,
        )
        assert dict(((s, d), w) for s, d, w in state.edges()) == model
        snap = state.snapshot()
        assert snap.indptr[-1] == len(model) == state.num_edges
        kept.append((snap, snap.indptr.copy(), snap.indices.copy(), snap.weights.copy()))
    for snap, indptr, indices, weights in kept:
        assert np.array_equal(snap.indptr, indptr)
        assert np.array_equal(snap.indices, indices)
        assert np.array_equal(snap.weights, weights)


def test_csr_graph_from_scipy_sums_duplicates() -> None:
    import scipy.sparse as sp

    m = sp.coo_array(([1.0, 2.0, 3.0], ([0, 0, 1], [1, 1, 0])), shape=(3, 3))
    g = CSRGraph.from_scipy(m)
    np.testing.assert_array_equal(g.to_scipy().toarray(), [[0, 3, 0], [3, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(g.out_weight, [3.0, 3.0, 0.0])


def test_tenant_graphs_are_separate() -> None:
    graphs = TenantGraphs()
    graphs.get("t1").add_edges(["a"], ["b"])
    assert graphs.get("t2").num_edges == 0
    assert graphs.tenants() == ["t1", "t2"] and "t1" in graphs
    graphs.drop("t1")
    assert "t1" not in graphs


# -- edge-list files ----------------------------------------------------------------------------------
def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_csv_with_header_and_weights(tmp_path: Path) -> None:
    edges = read_edge_list(write(tmp_path, "e.csv", 'source,target,weight\na,b,2.5\n"c,1",a,1\n'))
    assert edges.src == ["a", "c,1"] and edges.dst == ["b", "a"]
    np.testing.assert_array_equal(edges.weight, [2.5, 1.0])
    assert edges.weighted and len(edges) == 2
    assert list(edges) == [("a", "b", 2.5), ("c,1", "a", 1.0)]


def test_read_tsv_without_header_and_missing_weights(tmp_path: Path) -> None:
    edges = read_edge_list(write(tmp_path, "e.tsv", "a\tb\nb\tc\t3\n\n"))
    assert edges.src == ["a", "b"] and edges.weight.tolist() == [1.0, 3.0]


def test_read_whitespace_with_comments(tmp_path: Path) -> None:
    edges = read_edge_list(write(tmp_path, "e.txt", "# SNAP style\n1 2\n2   3 0.5\n"))
    assert edges.src == ["1", "2"] and edges.dst == ["2", "3"] and edges.weight.tolist() == [1.0, 0.5]
    assert not read_edge_list(write(tmp_path, "f.txt", "1 2\n")).weighted


def test_header_detection_and_override(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "src,dst\nsrc,dst\n")
    assert len(read_edge_list(path)) == 1
    assert len(read_edge_list(path, header=False)) == 2
    numeric = write(tmp_path, "n.csv", "1,2\n3,4\n")
    assert len(read_edge_list(numeric)) == 2 and len(read_edge_list(numeric, header=True)) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [("a,b\nc\n", ":2: expected src,dst"), ("a,b,x\nc,d,y\n", ":2: weight 'y'"), ("a,b,-1\n", "finite")],
)
def test_bad_lines_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(EdgeListError, match=message):
        read_edge_list(write(tmp_path, "bad.csv", text))


def test_from_edge_list(tmp_path: Path) -> None:
    state = GraphState.from_edge_list(write(tmp_path, "e.csv", "a,b,2\nb,a\n"))
    assert state.out_edges("a") == {"b": 2.0} and state.out_edges("b") == {"a": 1.0}


# -- dataset hash -------------------------------------------------------------------------------------
def test_dataset_hash_is_canonical(tmp_path: Path) -> None:
    a = read_edge_list(write(tmp_path, "a.csv", "src,dst,weight\nx,y,1\nb,c,2.5\n"))
    b = read_edge_list(write(tmp_path, "b.tsv", "b\tc\t2.5\nx\ty\n"))
    assert dataset_hash(a) == dataset_hash(b) == dataset_hash([("x", "y"), ("b", "c", 2.5)])
    assert dataset_hash(a) == dataset_hash(GraphState.from_edges(a.src, a.dst, a.weight))
    assert dataset_hash([("y", "x"), ("b", "c", 2.5)]) != dataset_hash(a)  # direction matters
    assert dataset_hash([("x", "y", 2.0), ("b", "c", 2.5)]) != dataset_hash(a)  # weight matters
    # The documented canonical bytes: compact JSON of the sorted [src, dst, weight] triples.
    canonical = b'[["b","c",2.5],["x","y",1.0]]'
    assert dataset_hash(a) == hashlib.sha256(canonical).hexdigest()


def test_edge_list_iterates_triples() -> None:
    edges = EdgeList(["a"], ["b"], np.array([2.0]))
    assert list(edges) == [("a", "b", 2.0)]
