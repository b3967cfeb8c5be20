"""TenantGraph: PageRank kept current per batch (a full solve when an update fails), which nodes get
events, when to recompute."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from wavegraph.errors import WavegraphError
from wavegraph.events import EdgeEvent
from wavegraph.processors.graph.pagerank import IncrementalPageRank
from wavegraph.processors.graph_job.tenant import TenantGraph


def ev(
    src: str, dst: str, ts: float, *, rel: str = "LINKS", weight: float = 1.0, op: str = "upsert"
) -> EdgeEvent:
    return EdgeEvent.model_validate(
        {"tenant": "acme", "src": src, "dst": dst, "rel": rel, "weight": weight, "ts": ts, "op": op}
    )


def step(g: TenantGraph, events: list[EdgeEvent]) -> None:
    change = g.apply(events)
    if change is not None:
        g.update_pagerank(change)


def l1_to_networkx(g: TenantGraph, expected: nx.MultiDiGraph) -> float:
    want = nx.pagerank(expected, alpha=0.85, tol=1e-14, max_iter=10_000, weight="weight")
    scores = g.scores()
    return sum(abs(scores[g.state.index_of(v)] - want[v]) for v in expected)


def karate_events(ts: float = 1.0) -> tuple[list[EdgeEvent], nx.MultiDiGraph]:
    karate = nx.karate_club_graph()
    events, multi = [], nx.MultiDiGraph()
    for u, v, w in karate.edges(data="weight"):
        for s, d in ((f"k{u}", f"k{v}"), (f"k{v}", f"k{u}")):
            events += [ev(s, d, ts, weight=float(w)), ev(s, d, ts, rel="KNOWS", weight=0.5)]
            multi.add_edge(s, d, weight=float(w))
            multi.add_edge(s, d, weight=0.5)
    return events, multi


def test_pagerank_follows_batches_of_upserts_and_deletes() -> None:
    g = TenantGraph("acme", damping=0.85, tol=1e-12)
    events, multi = karate_events()
    step(g, events[:100])
    step(g, events[100:])
    assert l1_to_networkx(g, multi) < 1e-9
    step(g, [ev("k0", "k1", 2.0, op="delete"), ev("k0", "k1", 2.0, rel="KNOWS", op="delete")])
    multi.remove_edges_from([("k0", "k1"), ("k0", "k1")])
    assert l1_to_networkx(g, multi) < 1e-9
    assert g.apply(events) is None  # a replay changes nothing


def test_new_nodes_are_published_then_only_what_moved_within_the_budget() -> None:
    g = TenantGraph("acme", damping=0.85, tol=1e-12)
    events, _ = karate_events()
    step(g, events)
    nodes, values = g.due_events(1e-7, cap=10_000)
    assert sorted(nodes.tolist()) == list(range(34))  # all new
    g.mark_published(nodes, values)
    assert g.due_events(1e-7, cap=10_000)[0].size == 0  # nothing moved

    step(g, [ev("k33", "k32", 2.0, weight=1.5)])  # a small re-weighting
    nodes, values = g.due_events(1e-3, cap=10_000)
    assert 0 < nodes.size < 34
    g.mark_published(nodes, values)
    published = g.scores().copy()
    published[nodes] = values
    assert np.abs(published - g.scores()).sum() <= 1e-3 + 1e-15
    rest, _ = g.due_events(1e-12, cap=10_000)
    assert set(rest.tolist()).isdisjoint(nodes.tolist())


def test_the_cap_delays_but_does_not_lose_events() -> None:
    g = TenantGraph("acme", damping=0.85, tol=1e-12)
    step(g, karate_events()[0])
    first, v1 = g.due_events(1e-7, cap=20)
    g.mark_published(first, v1)
    second, v2 = g.due_events(1e-7, cap=20)
    g.mark_published(second, v2)
    assert first.size == 20 and second.size == 14 and set(first.tolist()).isdisjoint(second.tolist())


def test_a_graph_started_as_published_has_nothing_due_until_it_changes() -> None:
    """``start_pagerank(published=True)``: the solved scores count as published (nothing is due), and
    only a later change makes nodes due again. (Staleness is the job's to set, not the graph's: see
    ``test_a_rebuilt_graph_is_marked_stale_and_recomputed`` below.)"""
    g = TenantGraph("acme", damping=0.85, tol=1e-12)
    events, multi = karate_events()
    g.apply(events)
    g.start_pagerank(published=True)
    assert g.due_events(1e-7, cap=100)[0].size == 0
    assert l1_to_networkx(g, multi) < 1e-9
    assert not g.stale  # a graph is only stale when the job says so
    step(g, [ev("k0", "k1", 2.0, op="delete"), ev("k0", "k1", 2.0, rel="KNOWS", op="delete")])
    nodes, _ = g.due_events(1e-7, cap=100)
    assert g.state.index_of("k1") in nodes.tolist()  # k1 lost its in-edge from k0: it moved the most


def test_a_rebuilt_graph_is_marked_stale_and_recomputed() -> None:
    """What the rebuild does to a graph (``GraphJob.finish_rebuild`` sets ``stale``): a stale graph is
    due for a recompute even when nothing changed since, and ``stale`` is what makes it so."""
    g = TenantGraph("acme", damping=0.85, tol=1e-12)
    g.apply(karate_events()[0])
    g.start_pagerank(published=False)
    g.changed_edges = 0  # as after a recompute: nothing changed since
    assert not g.recompute_due(0.1)
    g.stale = True
    assert g.recompute_due(0.1)


def test_recompute_is_due_when_more_than_the_fraction_changed() -> None:
    g = TenantGraph("acme", damping=0.85, tol=1e-10)
    assert not g.recompute_due(0.1)  # empty graph
    step(g, [ev(f"n{i}", f"n{i + 1}", 1.0) for i in range(100)])
    assert g.recompute_due(0.1)
    g.changed_edges = 0
    step(g, [ev(f"n{i}", f"n{i + 1}", 2.0, weight=2.0) for i in range(10)])
    assert g.changed_edges == 10 and not g.recompute_due(0.1)  # 10 of 100: not more than 10 %
    step(g, [ev("n0", "n1", 3.0, op="delete")])
    assert g.recompute_due(0.1)
    g.changed_edges = 0
    g.stale = True
    assert g.recompute_due(0.1)


def test_a_graph_rebuilt_without_published_scores_makes_every_node_due() -> None:
    g = TenantGraph("acme", damping=0.85, tol=1e-12)
    g.apply(karate_events()[0])
    g.start_pagerank(published=False)
    nodes, values = g.due_events(1e-7, cap=100)
    assert sorted(nodes.tolist()) == list(range(34))
    np.testing.assert_allclose(values, g.scores()[nodes])


def test_a_failing_incremental_update_falls_back_to_a_full_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocked fault: the guard keeps the weights where the push solver cannot fail, so the update is made
    to raise on purpose."""
    g = TenantGraph("acme", damping=0.85, tol=1e-12)
    events, multi = karate_events()
    step(g, events[:100])

    def broken(self: IncrementalPageRank, *args: object) -> None:
        raise WavegraphError("PageRank push did not converge")

    monkeypatch.setattr(IncrementalPageRank, "update", broken)
    step(g, events[100:])
    assert g.pagerank_resets == 1
    assert l1_to_networkx(g, multi) < 1e-9
