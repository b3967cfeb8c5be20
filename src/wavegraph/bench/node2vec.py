"""``wavegraph bench node2vec``: walk throughput next to PecanPy's, and the best (p, q) by link AUC.

**Throughput.** On one graph (pygsp's Minnesota road network, 2,640 nodes in its largest component,
or ``--edges``), for each (p, q) in :data:`SETTINGS` (``--quick``: :data:`QUICK_SETTINGS`),
``WALKS_PER_NODE`` walks from every node, all of the same length (``WALK_LENGTH`` nodes =
``WALK_LENGTH - 1`` steps; PecanPy's ``walk_length`` counts steps), in one run:

* ``ours``: :func:`~wavegraph.processors.graph.node2vec.random_walks` (numba, rejection sampling);
* ``pecanpy_sparseotf``: PecanPy's ``SparseOTF`` mode (transition probabilities on the fly);
* ``pecanpy_precomp``: PecanPy's ``PreComp`` mode (an alias table per edge pair), with its
  preprocessing time in ``preprocess_s`` (it includes numba compiling PecanPy's per-graph closure).
  Skipped when the tables would exceed ``PRECOMP_MAX_PAIRS`` entries.

PecanPy is timed through its numba walk kernel (``_random_walks``), compiled once: its public
``simulate_walks`` compiles a fresh closure on every call (seconds) and then turns every walk into a
list of string ids, neither of which is walking. Both sides use numba's threads and are compiled before
timing; each time is the best of ``repeats``, interleaved. ``ratio`` = our walks/s ÷ PecanPy
SparseOTF's walks/s at (p, q) = :data:`HEADLINE` (a genuinely second-order setting; at p = q = 1 our
walker takes first-order steps).

**Best (p, q).** :func:`~wavegraph.processors.graph.pq_search.search_pq` with a wall-clock budget on a
real graph (Minnesota for ``BUDGET_MIN`` minutes; ``--quick``: Les Misérables for ``QUICK_BUDGET_MIN``;
``--edges``: that graph), reported as a ``best_pq`` row with its link-prediction AUC; ``best_pq.json``
is written next to the report.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp

from wavegraph.bench.graphwave import largest_component, minnesota_adjacency
from wavegraph.errors import MissingPrerequisite
from wavegraph.processors.graph import node2vec as nv
from wavegraph.processors.graph.graphwave import undirected_adjacency
from wavegraph.processors.graph.pq_search import search_pq
from wavegraph.processors.graph.state import GraphState, dataset_hash, read_edge_list
from wavegraph.report import build_report, write_report

SETTINGS: tuple[tuple[float, float], ...] = ((1.0, 1.0), (0.5, 2.0), (2.0, 0.5), (0.25, 4.0))
HEADLINE = (0.5, 2.0)
QUICK_SETTINGS: tuple[tuple[float, float], ...] = ((1.0, 1.0), HEADLINE)
WALK_LENGTH = 80
WALKS_PER_NODE = 10
BUDGET_MIN = 3.0
QUICK_BUDGET_MIN = 0.25
PRECOMP_MAX_PAIRS = 50_000_000

# NumPy 1.x aliases that nptyping 2.0.1 (pinned by PecanPy 2.0.9) reads at import time; NumPy 2 removed
# them. They are defined only while PecanPy is being imported, then removed again.
_NUMPY1_ALIASES = {
    "bool8": np.bool_, "bytes0": np.bytes_, "cfloat": np.complex128, "clongfloat": np.clongdouble,
    "complex_": np.complex128, "float_": np.float64, "int0": np.intp, "longcomplex": np.clongdouble,
    "longfloat": np.longdouble, "object0": np.object_, "singlecomplex": np.complex64, "str0": np.str_,
    "string_": np.bytes_, "uint0": np.uintp, "unicode_": np.str_, "void0": np.void,
}  # fmt: skip


def import_pecanpy() -> ModuleType:
    """``pecanpy.pecanpy``, importable under NumPy 2 (see ``_NUMPY1_ALIASES``)."""
    added = []
    for name, alias in _NUMPY1_ALIASES.items():
        if name not in np.__dict__:
            try:
                getattr(np, name)
            except AttributeError:
                setattr(np, name, alias)
                added.append(name)
    try:
        from pecanpy import pecanpy
    except ImportError as exc:
        raise MissingPrerequisite("the node2vec bench needs PecanPy: pip install 'wavegraph[graph]'") from exc
    finally:
        for name in added:
            delattr(np, name)
    return pecanpy


@contextmanager
def _edge_file(a: sp.csr_matrix) -> Iterator[tuple[Path, bool]]:
    """The undirected graph ``a`` as a PecanPy ``.edg`` file (tab-separated, each edge once)."""
    upper = sp.triu(a, k=1).tocoo()
    weighted = bool(upper.data.size and not np.all(upper.data == upper.data[0]))
    with tempfile.TemporaryDirectory(prefix="wavegraph-n2v-") as tmp:
        path = Path(tmp) / "graph.edg"
        cols = [upper.row, upper.col] + ([upper.data] if weighted else [])
        np.savetxt(
            path, np.column_stack(cols), fmt=["%d", "%d"] + (["%.17g"] if weighted else []), delimiter="\t"
        )
        yield path, weighted


class _PecanPyWalker:
    """PecanPy's numba walk kernel (the part of ``simulate_walks`` that walks), compiled once.

    ``simulate_walks`` itself builds (and numba compiles) a new ``move_forward`` closure on every call,
    a few seconds each, then maps every walk to a list of string ids; neither is walking.
    """

    def __init__(self, model: Any, n_nodes: int, steps: int) -> None:
        from numba_progress import ProgressBar

        self._model, self._steps = model, steps
        self._starts = np.concatenate([np.arange(n_nodes, dtype=np.uint32)] * WALKS_PER_NODE)
        self._move, self._has_nbrs = model.get_move_forward(), model.get_has_nbrs()
        self._progress = ProgressBar(total=self._starts.size, disable=True)
        model._random_walks(4, 2, 0, self._starts[:4], self._has_nbrs, self._move, self._progress)  # compile

    def seconds(self, seed: int = 0) -> float:
        t0 = time.perf_counter()
        self._model._random_walks(
            self._starts.size, self._steps, seed, self._starts, self._has_nbrs, self._move, self._progress
        )
        return time.perf_counter() - t0

    def close(self) -> None:
        self._progress.close()


def _minnesota_state() -> GraphState:
    upper = sp.triu(largest_component(minnesota_adjacency()), k=1).tocoo()
    return GraphState.from_edges([str(u) for u in upper.row.tolist()], [str(v) for v in upper.col.tolist()])


def _lesmis_state() -> GraphState:
    import networkx as nx

    edges = list(nx.les_miserables_graph().edges(data="weight", default=1.0))
    return GraphState.from_edges([u for u, _, _ in edges], [v for _, v, _ in edges], [w for _, _, w in edges])


def run_node2vec_bench(
    quick: bool = False,
    out: Path | None = None,
    edges: Path | None = None,
    *,
    repeats: int | None = None,
    max_minutes: float | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the bench, write the JSON report (default ``bench/results/node2vec.json``) and
    ``best_pq.json`` beside it, print the table and return the report."""
    say = on_step or (lambda _msg: None)
    pecanpy = import_pecanpy()
    if edges is not None:
        edge_list = read_edge_list(edges)
        state = GraphState.from_edges(edge_list.src, edge_list.dst, edge_list.weight)
        name, digest = edges.name, dataset_hash(edge_list)
    else:
        state, name = _minnesota_state(), "minnesota"
        digest = dataset_hash(state)
    a = undirected_adjacency(state)
    search_a, search_name, search_digest = a, name, digest
    if quick and edges is None:
        lesmis = _lesmis_state()
        search_a, search_name, search_digest = (
            undirected_adjacency(lesmis),
            "les_miserables",
            dataset_hash(lesmis),
        )
    graph = nv.WalkGraph.from_adjacency(a)
    n = graph.n_nodes
    reps = repeats or 5
    common = {"graph": name, "nodes": n, "edges": int(a.nnz // 2), "walk_length": WALK_LENGTH,
              "walks_per_node": WALKS_PER_NODE}  # fmt: skip
    rows: list[dict[str, Any]] = []
    headline: dict[str, float] = {}
    with _edge_file(a) as (edg, weighted):
        for p, q in QUICK_SETTINGS if quick else SETTINGS:
            say(f"walks p={p} q={q}")
            otf = pecanpy.SparseOTF(p=p, q=q, workers=2, verbose=False, random_state=0)
            otf.read_edg(str(edg), weighted=weighted, directed=False)
            otf_walker = _PecanPyWalker(otf, n, WALK_LENGTH - 1)
            pre_walker, prep_s = None, 0.0
            if int((np.diff(graph.indptr).astype(np.int64) ** 2).sum()) <= PRECOMP_MAX_PAIRS:
                pre = pecanpy.PreComp(p=p, q=q, workers=2, verbose=False, random_state=0)
                pre.read_edg(str(edg), weighted=weighted, directed=False)
                t0 = time.perf_counter()
                pre.preprocess_transition_probs()
                prep_s = time.perf_counter() - t0
                pre_walker = _PecanPyWalker(pre, n, WALK_LENGTH - 1)
            nv.random_walks(graph, p=p, q=q, walk_length=3, walks_per_node=1)  # compile / load the cache
            best = {"ours": np.inf, "otf": np.inf, "pre": np.inf}
            stats = None
            for _ in range(reps):
                stats = nv.walk_throughput(
                    graph, p=p, q=q, walk_length=WALK_LENGTH, walks_per_node=WALKS_PER_NODE
                )
                best["ours"] = min(best["ours"], stats.seconds)
                best["otf"] = min(best["otf"], otf_walker.seconds())
                if pre_walker is not None:
                    best["pre"] = min(best["pre"], pre_walker.seconds())
            otf_walker.close()
            if pre_walker is not None:
                pre_walker.close()
            assert stats is not None
            walks, steps = stats.walks, stats.steps
            for case, key, prep in (("ours", "ours", 0.0), ("pecanpy_sparseotf", "otf", 0.0),
                                    ("pecanpy_precomp", "pre", prep_s)):  # fmt: skip
                if np.isfinite(best[key]):
                    rows.append({"case": case, "p": p, "q": q, **common, "seconds": best[key],
                                 "walks_per_s": walks / best[key], "steps_per_s": steps / best[key],
                                 "preprocess_s": prep})  # fmt: skip
            if (p, q) == HEADLINE:
                headline = {"ours": walks / best["ours"], "pecanpy": walks / best["otf"]}

    budget = max_minutes if max_minutes is not None else (QUICK_BUDGET_MIN if quick else BUDGET_MIN)
    say(f"(p, q) search, {budget} min")
    best_path = (out.parent if out is not None else Path("bench/results")) / "best_pq.json"
    result = search_pq(
        search_a, data_hash=search_digest, max_minutes=budget, out=best_path, on_trial=lambda t: say(str(t))
    )
    rows.append({"case": "best_pq", "p": result.p, "q": result.q, "graph": search_name,
                 "nodes": int(search_a.shape[0]), "edges": int(search_a.nnz // 2), "auc": result.score,
                 "trials": len(result.trials), "search_s": result.elapsed_s})  # fmt: skip
    params = {
        "graph": name, "nodes": n, "edges": int(a.nnz // 2), "quick": quick, "walk_length": WALK_LENGTH,
        "walks_per_node": WALKS_PER_NODE, "repeats": reps, "headline_pq": list(HEADLINE),
        "budget_min": budget, "search_graph": search_name, "dataset_hash": search_digest,
        "best_pq_json": str(best_path),
    }  # fmt: skip
    ratio = headline["ours"] / headline["pecanpy"] if headline else None
    report = build_report("node2vec", params, rows, ratio)
    write_report(report, out)
    return report
