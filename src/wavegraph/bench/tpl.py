"""``wavegraph bench tpl``: incremental PageRank vs a full recompute, for ΔE ∈ {0.01, 0.1, 1, 10, 20} %,
and the per-batch latency of a stream of micro-batches (100 and 1,000 edges).

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
either time. The micro-batch rows (ΔE 0.01 % and 0.1 %) carry the issue's goal (``goal_speedup``: 20×
and 5×); the CI gate only counts ΔE 1, 10 and 20 % (:func:`slow_cases`).

The ``stream_*`` rows are a stream, not a set of batches from the base: ``stream_batches`` consecutive
batches of ``batch_edges`` changes (same mix) are applied one after another to one state and one
engine, as the graph job does. ``latency_p50_ms`` / ``latency_p95_ms`` are the time of
``GraphState.apply`` + ``IncrementalPageRank.update`` per batch (``apply_p50_ms`` and
``update_p50_ms`` split it); ``full_s`` is the median full recompute on a few of the stream's graphs
and ``speedup`` is ``full_s`` over the median update. ``l1_error`` compares the engine after the last
batch with ``pagerank(tol=1e-10)``; ``max_error_bound`` is the largest guaranteed bound the engine
reported along the way (≤ ``tol`` by construction).
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

DELTAS_PCT: tuple[float, ...] = (0.01, 0.1, 1, 10, 20)
GATED_PCT = (1, 20)  # the CI gate counts ΔE in [1 %, 20 %]: the seed's 1/10/20 % cases
GOALS = {0.01: 20.0, 0.1: 5.0}  # the micro-batch goals (speedup at the same tol)
GOAL_TOL = 1e-6  # the "L1 ≤ 1e-6": micro-batch rows are also measured with both sides at it
STREAM_BATCHES = (100, 1_000)  # edges per micro-batch
STREAM_LENGTH = 60  # consecutive batches per stream (40 with --quick)
STREAM_FULL_EVERY = 10  # full recomputes timed along a stream (one every this many batches)
FULL_SIZE = (100_000, 1_000_000)
QUICK_SIZE = (20_000, 200_000)
TOL = 1e-7
NEW_NODE_SHARE = 0.02

T = TypeVar("T")
# (remove, add) for GraphState.apply: ((src, dst), (src, dst, weight))
Batch = tuple[tuple[list[str], list[str]], tuple[list[str], list[str], npt.NDArray[np.float64]]]


def run_tpl_bench(
    quick: bool = False,
    out: Path | None = None,
    edges: Path | None = None,
    seed: int = 0,
    *,
    deltas_pct: Sequence[float] = DELTAS_PCT,
    repeats: int | None = None,
    stream_batches: Sequence[int] = STREAM_BATCHES,
    stream_length: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the bench, write the JSON report (``out``, default ``bench/results/tpl.json``), print the
    table and return the report. ``ratio`` is the speedup at ΔE = 1 %."""
    console = console or Console()
    # The quick graph's solves take milliseconds: the best of 15 settles the CI gate's ratio (best of 7
    # moved it by ±0.15 around 2.1 at ΔE 10-20 % from run to run on the 2-core machine).
    repeats = repeats or (15 if quick else 5)
    stream_length = stream_length or (40 if quick else STREAM_LENGTH)
    if stream_length < 2:
        raise ValueError(f"a stream needs at least 2 batches, got {stream_length}")
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
        task = progress.add_task("building the graph", total=2 + len(deltas_pct) + len(stream_batches))
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
        # The seed's ΔE ≥ 1 % batches come from their own generator, as before the micro-batch cases
        # existed, so that their figures stay comparable from run to run of the bench's history.
        rng, micro_rng = np.random.default_rng(seed + 1), np.random.default_rng(seed + 2)
        for pct in deltas_pct:
            progress.update(task, description=f"ΔE = {pct:g} %")
            batch = make_batch(base, pct / 100.0, rng if pct >= 1 else micro_rng)
            rows.append(_measure(base, engine, pct, batch, repeats, TOL))
            if pct in GOALS:  # the accuracy (L1 ≤ 1e-6) as the tol of both sides, same batch
                rows.append(_measure(base, engine, pct, batch, repeats, GOAL_TOL))
            progress.advance(task)
        for size in stream_batches:
            progress.update(task, description=f"stream of {stream_length} batches of {size} edges")
            rows.append(_stream(base, engine, size, stream_length, micro_rng))
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
        "stream_length": stream_length,
        "workload": "half deletions (uniform), half insertions (degree-proportional), 2% with a new node",
    }
    first = next(
        (r for r in rows if r["delta_pct"] == 1 and r["tol"] == TOL and "batch_edges" not in r),
        rows[0] if rows else None,
    )
    report = build_report("tpl", params, rows, first["speedup"] if first else None)
    write_report(report, out, console)
    return report


def _measure(
    base: GraphState, engine: IncrementalPageRank, pct: float, batch: Batch, repeats: int, tol: float
) -> dict[str, Any]:
    """One batch from the base graph, timed both ways with the same ``tol`` (repeats interleaved)."""
    state = base.copy()
    remove, add = batch
    t0 = time.perf_counter()
    change = state.apply(remove=remove, add=add)
    apply_s = time.perf_counter() - t0
    graph = state.snapshot()
    # Repeats are interleaved so that both sides see the same machine load; each keeps its best time.
    full_s = scratch_s = incremental_s = float("inf")
    full = np.empty(0)
    updated = engine
    for k in range(repeats):
        elapsed, x = _timed(lambda: pagerank(graph, tol=tol))
        if elapsed < full_s:
            full_s, full = elapsed, x
        fresh = engine.copy()
        fresh.tol = tol
        elapsed, _ = _timed(partial(fresh.update, graph, change.changed_sources))
        if elapsed < incremental_s:
            incremental_s, updated = elapsed, fresh
        if k % 2 == 0:
            elapsed, _ = _timed(lambda: pagerank(graph, tol=tol, method="push"))
            scratch_s = min(scratch_s, elapsed)
    l1 = float(np.abs(updated.scores() - full).sum())
    goal = GOALS.get(pct)
    return {
        "case": f"delta_{pct:g}pct" + ("" if tol == TOL else f"_tol{tol:g}"),
        "delta_pct": pct,
        "tol": tol,
        "goal_speedup": goal,
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
        "edges_pushed_per_edge": updated.last_stats.edges_pushed / max(1, graph.num_edges),
    }


def _stream(
    base: GraphState, engine: IncrementalPageRank, size: int, length: int, rng: np.random.Generator
) -> dict[str, Any]:
    """``length`` consecutive batches of ``size`` changes on one state and one engine (a stream)."""
    state, updated = base.copy(), engine.copy()
    apply_ms: list[float] = []
    update_ms: list[float] = []
    full_s: list[float] = []
    max_bound = 0.0
    pushed = 0
    for k in range(length):
        remove, add = make_batch(state, size / state.num_edges, rng)
        t0 = time.perf_counter()
        change = state.apply(remove=remove, add=add)
        t1 = time.perf_counter()
        stats = updated.update(state.snapshot(), change.changed_sources)
        t2 = time.perf_counter()
        apply_ms.append((t1 - t0) * 1e3)
        update_ms.append((t2 - t1) * 1e3)
        max_bound = max(max_bound, stats.error_bound)
        pushed += stats.edges_pushed
        if k % STREAM_FULL_EVERY == STREAM_FULL_EVERY - 1:
            full_s.append(_timed(lambda: pagerank(state, tol=TOL))[0])
    latency = np.add(apply_ms, update_ms)
    exact = pagerank(state, tol=1e-10)
    full = float(np.median(full_s)) if full_s else _timed(lambda: pagerank(state, tol=TOL))[0]
    update_p50 = float(np.median(update_ms))
    return {
        "case": f"stream_{size}",
        "delta_pct": 100.0 * size / base.num_edges,
        "tol": TOL,
        "batch_edges": size,
        "stream_batches": length,
        "latency_p50_ms": float(np.percentile(latency, 50)),
        "latency_p95_ms": float(np.percentile(latency, 95)),
        "apply_p50_ms": float(np.median(apply_ms)),
        "update_p50_ms": update_p50,
        "update_p95_ms": float(np.percentile(update_ms, 95)),
        "full_s": full,
        "speedup": full / (update_p50 / 1e3),
        "l1_error": float(np.abs(updated.scores() - exact).sum()),
        "max_error_bound": max_bound,
        "edges_pushed_per_edge": pushed / length / max(1, state.num_edges),
    }


def make_batch(base: GraphState, fraction: float, rng: np.random.Generator) -> Batch:
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


def slow_cases(
    reports: list[dict[str, Any]],
    minimum: float,
    max_delta_pct: float = GATED_PCT[1],
    min_delta_pct: float = GATED_PCT[0],
) -> dict[float, float]:
    """ΔE % → best speedup over ``reports`` for the cases between ``min_delta_pct`` and
    ``max_delta_pct`` whose best is below ``minimum`` (empty: the gate holds). The micro-batch cases
    (below 1 %) have their own goals (``goal_speedup``) and are not gated."""
    best: dict[float, float] = {}
    for report in reports:
        for row in report["rows"]:
            gated = "batch_edges" not in row and row.get("tol", TOL) == TOL
            if gated and min_delta_pct <= row["delta_pct"] <= max_delta_pct:
                best[row["delta_pct"]] = max(best.get(row["delta_pct"], 0.0), row["speedup"])
    return {pct: round(s, 2) for pct, s in best.items() if s < minimum}
