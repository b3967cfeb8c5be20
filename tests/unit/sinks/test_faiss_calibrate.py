"""The hybrid index times its scan against its graph on this machine and keeps the faster one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wavegraph.bench.ann import synthetic_clustered
from wavegraph.sinks.faiss import HybridIndex, HybridParams, calibrate

faiss = pytest.importorskip("faiss")


class _Clock:
    """A clock the fake paths advance: each call costs what the test says (no real timing)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _path(clock: _Clock, costs: list[float]) -> Any:
    calls = iter(costs)

    def run(q: np.ndarray) -> None:
        assert q.shape == (1, 8)  # one query per call, as a request makes it
        clock.now += next(calls)

    return run


def test_the_scan_is_kept_until_the_rows_make_it_slower_than_the_graph() -> None:
    queries = np.ones((4, 8), np.float32)
    clock = _Clock()
    # scan 1.0 per query, graph 2.5; one spike of the graph in the first pass is not its time
    exact = _path(clock, [1.0] * 12)
    graph = _path(clock, [9.0, 2.5, 2.5, 2.5] + [2.5] * 8)
    assert calibrate.exact_limit(1000, exact, graph, queries, clock=clock) == 2500


def test_a_faster_graph_gives_no_limit_and_a_much_faster_one_stops_the_measurement() -> None:
    queries = np.ones((4, 8), np.float32)
    clock = _Clock()
    exact, graph = _path(clock, [2.0] * 12), _path(clock, [1.0] * 12)
    assert calibrate.exact_limit(1000, exact, graph, queries, clock=clock) == 0
    exact, graph = _path(clock, [1.0] * 12), _path(clock, [1.1] * 12)  # a close call goes to the graph
    assert calibrate.exact_limit(1000, exact, graph, queries, clock=clock) == 0
    scans: list[int] = []

    def slow_scan(q: np.ndarray) -> None:
        scans.append(1)
        clock.now += 10.0

    assert calibrate.exact_limit(1000, slow_scan, _path(clock, [1.0] * 12), queries, clock=clock) == 0
    assert len(scans) == 4  # one pass: a graph 10x faster needs no second look
    with pytest.raises(ValueError, match="at least one query"):
        calibrate.exact_limit(1000, slow_scan, slow_scan, queries[:0])


def test_probe_queries_are_unit_vectors_near_the_rows_but_not_the_rows() -> None:
    rows = synthetic_clustered(500, 64, seed=3).astype(np.float16)
    q = calibrate.probe_queries(rows, 24)
    assert q.shape == (24, 64) and q.dtype == np.float32 and q.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    best = (q @ rows.astype(np.float32).T).max(axis=1)
    assert (best < 0.99).all() and (best > 0.5).all()  # close to the data, none of it exactly
    assert calibrate.probe_queries(rows[:5], 24).shape == (5, 64)


def _index(path: Path, n: int, **params: Any) -> HybridIndex:
    x = synthetic_clustered(n, 384, seed=11)
    index = HybridIndex(path, HybridParams(min_train=1000, train_size=4000, **params))
    index.add_batch("a", "doc", [f"d{i}" for i in range(n)], x)
    return index


def test_a_small_graph_loses_to_the_scan_here_so_searches_scan() -> None:
    """Real timing: 1,100 x 384 rows are a fifth of the work the threshold is set at, so the scan beats
    the graph on any CPU; the search then answers exactly (the scan's hits are the true top k)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        index = _index(Path(tmp) / "idx", 1100)
        assert index.trained and index.path(1100) == "exact"
        rows = index._state.store.rows.astype(np.float32)
        q = calibrate.probe_queries(rows, 8, seed=5)
        for i, hits in enumerate(index.search_batch("a", q, k=10)):
            want = np.argsort(-(rows @ q[i]), kind="stable")[:10]
            assert [h.id for h in hits] == [f"d{r}" for r in want]
        index.close()


def test_the_measurement_is_made_once_per_graph_and_again_after_a_rebuild_or_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timing itself is replaced (a machine's speed cannot be set from a test): the index must ask
    once per graph, and follow the answer."""
    limits = iter([1400, 0, 0])
    asked: list[int] = []

    def fake_limit(rows: int, exact: Any, graph: Any, queries: np.ndarray, **_: Any) -> int:
        asked.append(rows)
        exact(queries[:1])  # both paths are really callable on the index's own state
        graph(queries[:1])
        return next(limits)

    monkeypatch.setattr(calibrate, "exact_limit", fake_limit)
    index = _index(tmp_path / "idx", 1200)
    assert [index.path(1200) for _ in range(5)] == ["exact"] * 5
    assert asked == [1200]
    assert index.path(1300) == "exact" and index.path(1400) == "hnsw"  # the measured limit, capped at
    assert index._exact_limit(index._state) == 1400  # 1.5x the threshold (1,500 rows here)
    index.rebuild(index.rows())  # a new graph: measured at the end of the rebuild
    assert asked == [1200, 1200] and index.path(1200) == "hnsw"
    index.save()
    index.close()
    loaded = HybridIndex.load(tmp_path / "idx")
    assert asked == [1200, 1200, 1200] and loaded.path(1200) == "hnsw"
    loaded.close()
    fixed = _index(tmp_path / "fixed", 1200, calibrate=False)
    assert fixed.path(1200) == "hnsw" and len(asked) == 3  # calibrate=False: the threshold alone
