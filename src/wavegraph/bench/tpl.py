"""``wavegraph bench tpl``: incremental PageRank vs a full recompute, for ΔE ∈ {0.01, 0.1, 1, 10, 20} %,
and the graph job's per-batch latency for batches of 100 and 1,000 edges.

The base graph is a seeded directed power-law graph (Chung–Lu: each edge draws its source with
probability ∝ an out-weight and its destination ∝ an in-weight, both Zipf-like with exponent 2.2,
weights 1–5) or the user's ``--edges`` file. For each ΔE, a batch of ``ΔE · |E|`` changes is applied to
the base graph: half deletions of existing edges chosen uniformly, half insertions drawn from the graph's
own degree distributions (the source of one random existing edge, the destination of another, the weight
of a third), 2 % of them bringing a brand-new node. The same batch is then timed two ways, repeats
interleaved (so both see the same machine load), each keeping its best time:

* ``full_s``: :func:`~wavegraph.processors.graph.pagerank.pagerank` (power iteration) on the new graph;
* ``incremental_s``: :meth:`IncrementalPageRank.update` from the base graph's state to the new graph, as
  the graph job calls it (on the state's live rows, with the batch's :class:`GraphChange`).

Both stop at the same guaranteed L1 bound ``tol`` to the exact PageRank, so ``l1_error`` (incremental vs
full) is at most ``2 tol``. ``push_scratch_s`` is the push engine run on the new graph from zero: the
ratio ``push_scratch_s / incremental_s`` is the part of the speedup due to reusing the previous state,
the rest is the push solver itself. ``apply_s`` (updating the graph state in place, needed by both; the
full recompute also needs the compact snapshot, ``snapshot_s``) is not in either time.

The seed's cases (ΔE ≥ 1 %) are what the CI gate checks (:func:`slow_cases`, "fail below 2×"). The
micro-batch cases (ΔE < 1 %) carry their own goals in ``goal`` (issue 16: 20× at 0.01 %, 5× at 0.1 %)
and ``meets_goal``, reported and not gated.

``report["job"]``: the graph job's path for one tenant holding the base graph
(:class:`~wavegraph.processors.graph_job.tenant.TenantGraph`, the job's damping and ``pagerank_tol``),
fed ``JOB_STEPS`` consecutive batches of edge events of each size (deletions and insertions as above):
per batch ``apply_s`` (edge table + graph state), ``pagerank_s`` (the incremental update),
``publish_s`` (choosing the NodeEvents: :meth:`TenantGraph.due_events`), medians and maxima over the
batches, next to ``full_s``, the power iteration on the final graph at the same tolerance, and the final
scores' ``l1_error`` to a 1e-12 power iteration.
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
from rich.table import Table

from wavegraph.events import EdgeEvent
from wavegraph.processors.graph.pagerank import IncrementalPageRank, pagerank
from wavegraph.processors.graph.state import GraphState, read_edge_list
from wavegraph.processors.graph_job.pipeline import PUBLISH_L1
from wavegraph.processors.graph_job.tenant import TenantGraph
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings

__all__ = ["GOALS", "make_batch", "run_tpl_bench", "slow_cases", "synthetic_graph"]

DELTAS_PCT = (0.01, 0.1, 1, 10, 20)
GATED_FROM_PCT = 1  # the seed's cases: the CI gate ("fail below 2×") applies from here up to 20 %
GOALS = {0.01: 20.0, 0.1: 5.0}  # issue 16's goals for the micro-batch cases (reported, not gated)
FULL_SIZE = (100_000, 1_000_000)
QUICK_SIZE = (20_000, 200_000)
TOL = 1e-7
NEW_NODE_SHARE = 0.02
JOB_BATCHES = (100, 1_000)
JOB_STEPS = 5
JOB_TENANT = "acme"

T = TypeVar("T")


def run_tpl_bench(
    quick: bool = False,
    out: Path | None = None,
    edges: Path | None = None,
    seed: int = 0,
    *,
    deltas_pct: Sequence[float] = DELTAS_PCT,
    job_batches: Sequence[int] = JOB_BATCHES,
    repeats: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the bench, write the JSON report (``out``, default ``bench/results/tpl.json``), print the
    tables and return the report. ``ratio`` is the speedup at ΔE = 1 %."""
    console = console or Console()
    repeats = repeats or (7 if quick else 5)
    nodes, num_edges = QUICK_SIZE if quick else FULL_SIZE
    graph_settings = Settings().graph
    rows: list[dict[str, Any]] = []
    job: list[dict[str, Any]] = []
    _warm_up()
    with Progress(
        TextColumn("[bold]bench tpl[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("building the graph", total=2 + len(deltas_pct) + len(job_batches))
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
        engine = IncrementalPageRank(base.rows(), tol=TOL)
        progress.advance(task)
        rng = np.random.default_rng(seed + 1)
        for pct in deltas_pct:
            progress.update(task, description=f"ΔE = {pct:g} %")
            rows.append(_measure(base, engine, pct, rng, repeats))
            progress.advance(task)
        for size in job_batches:
            progress.update(task, description=f"graph job, batches of {size} edges")
            job.append(_job_latency(base, size, graph_settings.damping, graph_settings.pagerank_tol, rng))
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
        "gated_from_pct": GATED_FROM_PCT,
        "job_tol": graph_settings.pagerank_tol,
        "job_steps": JOB_STEPS,
    }
    first = next((r for r in rows if r["delta_pct"] == 1), rows[0] if rows else None)
    report = build_report("tpl", params, rows, first["speedup"] if first else None)
    report["job"] = job
    write_report(report, out, console)
    if job:
        _print_job(job, console)
    return report


def _measure(
    base: GraphState, engine: IncrementalPageRank, pct: float, rng: np.random.Generator, repeats: int
) -> dict[str, Any]:
    state = base.copy()
    remove, add = make_batch(base, pct / 100.0, rng)
    t0 = time.perf_counter()
    change = state.apply(remove=remove, add=add)
    apply_s = time.perf_counter() - t0
    snapshot_s, graph = _timed(state.snapshot)
    live = state.rows()
    # Repeats are interleaved so that both sides see the same machine load; each keeps its best time.
    full_s = scratch_s = incremental_s = float("inf")
    full = np.empty(0)
    updated = engine
    for k in range(repeats):
        elapsed, x = _timed(lambda: pagerank(graph, tol=TOL))
        if elapsed < full_s:
            full_s, full = elapsed, x
        fresh = engine.copy()
        elapsed, _ = _timed(partial(fresh.update, live, change))
        if elapsed < incremental_s:
            incremental_s, updated = elapsed, fresh
        if k % 2 == 0:
            elapsed, _ = _timed(lambda: pagerank(graph, tol=TOL, method="push"))
            scratch_s = min(scratch_s, elapsed)
    l1 = float(np.abs(updated.scores() - full).sum())
    speedup = full_s / incremental_s
    goal = GOALS.get(pct)
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
        "speedup": speedup,
        "goal": goal,
        "meets_goal": None if goal is None else speedup >= goal,
        "gated": GATED_FROM_PCT <= pct,
        "l1_error": l1,
        "push_scratch_s": scratch_s,
        "speedup_vs_push_scratch": scratch_s / incremental_s,
        "apply_s": apply_s,
        "snapshot_s": snapshot_s,
        "sweeps": updated.last_stats.sweeps,
        "pushes": updated.last_stats.pushes,
        "edges_pushed": updated.last_stats.edges_pushed,
    }


def _job_latency(
    base: GraphState, size: int, damping: float, tol: float, rng: np.random.Generator
) -> dict[str, Any]:
    """The graph job's per-batch path on one tenant holding ``base`` (see the module docstring)."""
    g = TenantGraph(JOB_TENANT, damping=damping, tol=tol)
    g.state = base.copy()
    g.start_pagerank(published=True)
    timings: dict[str, list[float]] = {"apply_s": [], "pagerank_s": [], "publish_s": [], "total_s": []}
    for step in range(1, JOB_STEPS + 1):
        events = _batch_events(g, size, step, rng)
        t0 = time.perf_counter()
        change = g.apply(events)
        t1 = time.perf_counter()
        if change is not None:
            g.update_pagerank(change)
        t2 = time.perf_counter()
        nodes, values = g.due_events(PUBLISH_L1, 10_000)
        g.mark_published(nodes, values)
        t3 = time.perf_counter()
        for key, value in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            timings[key].append(value)
    snapshot = g.state.snapshot()
    full_s, _ = _timed(lambda: pagerank(snapshot, damping=damping, tol=tol))
    exact = pagerank(snapshot, damping=damping, tol=1e-12)
    row: dict[str, Any] = {"batch_edges": size, "tol": tol, "batches": JOB_STEPS}
    for key, times in timings.items():
        row[key.replace("_s", "_p50_s")] = float(np.median(times))
        row[key.replace("_s", "_max_s")] = float(np.max(times))
    row["full_s"] = full_s
    row["speedup_pagerank"] = full_s / row["pagerank_p50_s"]
    row["l1_error"] = float(np.abs(g.scores() - exact).sum())
    row["pagerank_resets"] = g.pagerank_resets
    return row


def _batch_events(g: TenantGraph, size: int, step: int, rng: np.random.Generator) -> list[EdgeEvent]:
    """``size`` edge events for ``g`` like :func:`make_batch`'s (deletions of existing edges first).

    The bench loads the base graph into the state directly, so the edge table first learns (at ts 0)
    the typed edges the deletions name, as if their upserts had been consumed earlier."""
    (rm_src, rm_dst), (add_src, add_dst, weight) = make_batch(g.state, size / g.state.num_edges, rng)
    known = [_event(s, d, g.state.out_edges(s)[d], 0.0) for s, d in zip(rm_src, rm_dst, strict=True)]
    g.edges.apply(known)
    deletes = [_event(s, d, 1.0, float(step), op="delete") for s, d in zip(rm_src, rm_dst, strict=True)]
    upserts = [
        _event(s, d, float(w), float(step)) for s, d, w in zip(add_src, add_dst, weight.tolist(), strict=True)
    ]
    return deletes + upserts


def _event(src: str, dst: str, weight: float, ts: float, op: str = "upsert") -> EdgeEvent:
    return EdgeEvent.model_validate(
        {"tenant": JOB_TENANT, "src": src, "dst": dst, "weight": weight, "ts": ts, "op": op}
    )


def _print_job(job: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="graph job: per-batch latency (one tenant)")
    columns = ["batch_edges", "apply_p50_s", "pagerank_p50_s", "pagerank_max_s", "publish_p50_s"]
    columns += ["total_p50_s", "full_s", "speedup_pagerank", "l1_error"]
    for col in columns:
        table.add_column(col, justify="right")
    for row in job:
        table.add_row(*(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console.print(table)


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
    engine = IncrementalPageRank(tiny.rows())
    change = tiny.add_edges(["a"], ["d"])
    engine.update(tiny.rows(), change)
    pagerank(tiny, method="push")


def slow_cases(
    reports: list[dict[str, Any]], minimum: float, max_delta_pct: float = 20
) -> dict[float, float]:
    """ΔE % → best speedup over ``reports`` for the seed's cases (``GATED_FROM_PCT`` ≤ ΔE ≤
    ``max_delta_pct``) whose best is below ``minimum`` (empty: the gate holds). The micro-batch cases
    are measured against their own goals (``goal``, ``meets_goal`` in their rows), not gated."""
    best: dict[float, float] = {}
    for report in reports:
        for row in report["rows"]:
            if GATED_FROM_PCT <= row["delta_pct"] <= max_delta_pct:
                best[row["delta_pct"]] = max(best.get(row["delta_pct"], 0.0), row["speedup"])
    return {pct: round(s, 2) for pct, s in best.items() if s < minimum}
