"""``wavegraph bench tpl``: incremental PageRank vs a full recompute, for ΔE ∈ {1 %, 10 %, 20 %}.

The base graph is a seeded directed power-law graph (Chung–Lu: each edge draws its source with
probability ∝ an out-weight and its destination ∝ an in-weight, both Zipf-like with exponent 2.2,
weights 1–5) or the user's ``--edges`` file. For each ΔE, a batch of ``ΔE · |E|`` changes is applied to
the base graph: half deletions of existing edges chosen uniformly, half insertions drawn from the graph's
own degree distributions (the source of one random existing edge, the destination of another, the weight
of a third), 2 % of them bringing a brand-new node. The same batch is then timed two ways, repeats
interleaved (so both see the same machine load), each keeping its best time:

* ``full_s``: :func:`~wavegraph.processors.graph.pagerank.pagerank` (power iteration) on the new graph;
* ``incremental_s``: :meth:`IncrementalPageRank.update` from the base graph's state to the new graph.

Both stop at the same guaranteed L1 bound ``tol`` to the exact PageRank, so ``l1_error`` (incremental vs
full) is at most ``2 tol``. ``push_scratch_s`` is the push engine run on the new graph from zero: the
ratio ``push_scratch_s / incremental_s`` is the part of the speedup due to reusing the previous state,
the rest is the push solver itself. ``apply_s`` (updating the graph state, needed by both) is not in
either time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wavegraph.processors.graph.pagerank import IncrementalPageRank, pagerank
from wavegraph.processors.graph.state import GraphState, read_edge_list
from wavegraph.report import build_report, write_report

__all__ = ["make_batch", "run_tpl_bench", "synthetic_graph"]

DELTAS_PCT = (1, 10, 20)
FULL_SIZE = (100_000, 1_000_000)
QUICK_SIZE = (20_000, 200_000)
TOL = 1e-7
NEW_NODE_SHARE = 0.02

T = TypeVar("T")


def run_tpl_bench(
    quick: bool = False,
    out: Path | None = None,
    edges: Path | None = None,
    seed: int = 0,
    *,
    deltas_pct: Sequence[float] = DELTAS_PCT,
    repeats: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the bench, write the JSON report (``out``, default ``bench/results/tpl.json``), print the
    table and return the report. ``ratio`` is the speedup at ΔE = 1 %."""
    console = console or Console()
    repeats = repeats or (7 if quick else 5)
    nodes, num_edges = QUICK_SIZE if quick else FULL_SIZE
    rows: list[dict[str, Any]] = []
    _warm_up()
    with Progress(
        TextColumn("[bold]bench tpl[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("building the graph", total=2 + len(deltas_pct))
        if edges is None:
            src, dst, weight = synthetic_graph(nodes, num_edges, seed)
            base = GraphState.from_edges(src, dst, weight)
            source = "synthetic power-law (Chung-Lu, exponent 2.2)"
        else:
            edge_list = read_edge_list(edges)
            base = GraphState.from_edges(edge_list.src, edge_list.dst, edge_list.weight)
            source = str(edges)
        if base.num_edges < 100:
            raise ValueError(f"bench tpl needs at least 100 edges, {source} has {base.num_edges}")
        progress.advance(task)
        progress.update(task, description="PageRank of the base graph")
        engine = IncrementalPageRank(base.snapshot(), tol=TOL)
        progress.advance(task)
        rng = np.random.default_rng(seed + 1)
        for pct in deltas_pct:
            progress.update(task, description=f"ΔE = {pct:g} %")
            rows.append(_measure(base, engine, pct, rng, repeats))
            progress.advance(task)
    params = {
        "nodes": base.num_nodes,
        "edges": base.num_edges,
        "quick": quick,
        "seed": seed,
        "source": source,
        "damping": engine.damping,
        "tol": TOL,
        "engine": engine.engine,
        "repeats": repeats,
        "workload": "half deletions (uniform), half insertions (degree-proportional), 2% with a new node",
    }
    first = next((r for r in rows if r["delta_pct"] == 1), rows[0] if rows else None)
    report = build_report("tpl", params, rows, first["speedup"] if first else None)
    write_report(report, out, console)
    return report


def _measure(
    base: GraphState, engine: IncrementalPageRank, pct: float, rng: np.random.Generator, repeats: int
) -> dict[str, Any]:
    state = base.copy()
    remove, add = make_batch(base, pct / 100.0, rng)
    t0 = time.perf_counter()
    change = state.apply(remove=remove, add=add)
    apply_s = time.perf_counter() - t0
    graph = state.snapshot()
    # Repeats are interleaved so that both sides see the same machine load; each keeps its best time.
    full_s = scratch_s = incremental_s = float("inf")
    full = np.empty(0)
    updated = engine
    for k in range(repeats):
        elapsed, x = _timed(lambda: pagerank(graph, tol=TOL))
        if elapsed < full_s:
            full_s, full = elapsed, x
        fresh = engine.copy()
        elapsed, _ = _timed(partial(fresh.update, graph, change.changed_sources))
        if elapsed < incremental_s:
            incremental_s, updated = elapsed, fresh
        if k % 2 == 0:
            elapsed, _ = _timed(lambda: pagerank(graph, tol=TOL, method="push"))
            scratch_s = min(scratch_s, elapsed)
    l1 = float(np.abs(updated.scores() - full).sum())
    return {
        "case": f"delta_{pct:g}pct",
        "delta_pct": pct,
        "inserted": change.added,
        "updated": change.updated,
        "deleted": change.removed,
        "new_nodes": change.new_nodes,
        "changed_sources": int(change.changed_sources.size),
        "full_s": full_s,
        "incremental_s": incremental_s,
        "speedup": full_s / incremental_s,
        "l1_error": l1,
        "push_scratch_s": scratch_s,
        "speedup_vs_push_scratch": scratch_s / incremental_s,
        "apply_s": apply_s,
        "sweeps": updated.last_stats.sweeps,
    }


def make_batch(
    base: GraphState, fraction: float, rng: np.random.Generator
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str], npt.NDArray[np.float64]]]:
    """``(remove, add)`` for :meth:`GraphState.apply`: ``fraction · |E|`` changes, half of each kind."""
    m = base.num_edges
    total = max(2, round(fraction * m))
    n_del, n_add = total // 2, total - total // 2
    snap = base.snapshot()
    ids = base.node_ids
    src_of = np.repeat(np.arange(snap.num_nodes), np.diff(snap.indptr))
    gone = rng.choice(m, size=n_del, replace=False)
    remove = ([ids[i] for i in src_of[gone]], [ids[i] for i in snap.indices[gone]])
    s = src_of[rng.integers(0, m, n_add)]
    d = snap.indices[rng.integers(0, m, n_add)]
    w = np.array(snap.weights[rng.integers(0, m, n_add)])
    add_src = [ids[i] for i in s]
    add_dst = [ids[i] for i in d]
    fresh = np.flatnonzero(rng.random(n_add) < NEW_NODE_SHARE)
    for k, i in enumerate(fresh.tolist()):
        if k % 2:
            add_src[i] = f"tpl-new-{i}"
        else:
            add_dst[i] = f"tpl-new-{i}"
    return remove, (add_src, add_dst, w)


def synthetic_graph(
    nodes: int, edges: int, seed: int = 0, exponent: float = 2.2
) -> tuple[list[str], list[str], npt.NDArray[np.float64]]:
    """A seeded directed power-law graph with exactly ``edges`` distinct edges (self-loops allowed):
    Chung–Lu sampling with Zipf-like out- and in-weights ``rank^(−1/(exponent − 1))``, shuffled
    independently, and integer weights 1–5."""
    if not 0 < edges <= nodes * nodes // 4:
        raise ValueError(f"{edges} edges do not fit a sparse graph of {nodes} nodes")
    rng = np.random.default_rng(seed)
    zipf = np.arange(1, nodes + 1, dtype=np.float64) ** (-1.0 / (exponent - 1.0))
    cdf_out = np.cumsum(rng.permutation(zipf))
    cdf_in = np.cumsum(rng.permutation(zipf))
    keys = np.empty(0, np.int64)
    while keys.size < edges:
        draw = int((edges - keys.size) * 1.2) + 16
        s = np.searchsorted(cdf_out, rng.random(draw) * cdf_out[-1], side="right")
        d = np.searchsorted(cdf_in, rng.random(draw) * cdf_in[-1], side="right")
        keys = np.unique(np.concatenate([keys, np.minimum(s, nodes - 1) * nodes + np.minimum(d, nodes - 1)]))
    keys = rng.permutation(keys)[:edges]
    weight = rng.integers(1, 6, size=edges).astype(np.float64)
    names = [f"n{i}" for i in range(nodes)]
    return [names[i] for i in keys // nodes], [names[i] for i in keys % nodes], weight


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _warm_up() -> None:
    """Compile the numba kernels (or load them from numba's cache) before anything is timed."""
    tiny = GraphState.from_edges(["a", "b", "c"], ["b", "c", "a"])
    engine = IncrementalPageRank(tiny.snapshot())
    change = tiny.add_edges(["a"], ["d"])
    engine.update(tiny.snapshot(), change.changed_sources)
    pagerank(tiny, method="push")


def slow_cases(reports: list[dict[str, Any]], minimum: float, max_delta_pct: float = 20) -> dict[int, float]:
    """ΔE % → best speedup over ``reports`` for the cases at most ``max_delta_pct`` whose best is below
    ``minimum`` (empty: the gate holds)."""
    best: dict[int, float] = {}
    for report in reports:
        for row in report["rows"]:
            if row["delta_pct"] <= max_delta_pct:
                best[row["delta_pct"]] = max(best.get(row["delta_pct"], 0.0), row["speedup"])
    return {pct: round(s, 2) for pct, s in best.items() if s < minimum}
