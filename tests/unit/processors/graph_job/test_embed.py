"""compute_embeddings: HAA of the job's graph = ``haa_from_edges`` on its edges, whatever the node order."""

from __future__ import annotations

import threading

import networkx as nx
import numpy as np
import pytest

from wavegraph.processors.graph.haa import haa_from_edges
from wavegraph.processors.graph.state import GraphState
from wavegraph.processors.graph_job.embed import (
    EmbeddingParams,
    RecomputeCancelled,
    compute_embeddings,
    neighbour_adjacency,
)


def les_miserables_state(seed: int) -> tuple[GraphState, list[tuple[str, str, float]]]:
    edges = [(u, v, float(w)) for u, v, w in nx.les_miserables_graph().edges(data="weight")]
    order = np.random.default_rng(seed).permutation(len(edges))
    src = [edges[i][0] for i in order]
    dst = [edges[i][1] for i in order]
    return GraphState.from_edges(src, dst, [edges[i][2] for i in order]), edges  # one direction only


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_haa_equals_haa_from_edges_in_any_arrival_order(seed: int) -> None:
    state, edges = les_miserables_state(seed)
    ids = list(state.node_ids)
    params = EmbeddingParams(dim=16, curvature=-0.5, temperature=0.7)
    out = compute_embeddings(state.snapshot(), params, node_ids=ids)
    ref_ids, ref_haa, _ = haa_from_edges(edges, curvature=-0.5, tau=0.7, dim=16)
    rows = [ref_ids.index(v) for v in ids]
    np.testing.assert_allclose(out.haa, ref_haa[rows], atol=1e-6)
    assert out.haa.dtype == np.float32 and out.points.shape == (77, 16)
    radius = 1 / np.sqrt(0.5)
    assert float(np.linalg.norm(out.haa.astype(np.float64), axis=1).max()) < radius


def test_neighbours_are_undirected_without_self_loops_whatever_the_weight() -> None:
    state = GraphState.from_edges(["a", "b", "c", "c"], ["b", "a", "c", "a"], [2.0, 0.0, 1.0, 0.0])
    a = neighbour_adjacency(state.snapshot()).toarray()
    np.testing.assert_array_equal(a, [[0, 1, 1], [1, 0, 0], [1, 0, 0]])
    w = neighbour_adjacency(state.snapshot(), weighted=True).toarray()
    np.testing.assert_array_equal(w, [[0, 2, 0], [2, 0, 0], [0, 0, 0]])


def test_a_set_cancel_flag_stops_before_the_next_stage() -> None:
    state, _ = les_miserables_state(0)
    cancel = threading.Event()
    stages: list[str] = []

    def stage(name: str) -> None:
        stages.append(name)
        if name == "spectral":
            cancel.set()

    with pytest.raises(RecomputeCancelled):
        compute_embeddings(state.snapshot(), EmbeddingParams(dim=8), cancel, stage)
    assert stages == ["adjacency", "spectral"]
