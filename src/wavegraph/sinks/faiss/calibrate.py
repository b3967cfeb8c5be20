"""Which path answers faster on this machine: the exact scan or the graph, measured once per graph.

The HNSW threshold (``EXACT_WORK`` values) is where the scan stopped being cheaper than the graph on the
machine it was measured on. On another CPU the crossing moves: with a 32 MB L3 and AVX-512 (AMD EPYC,
Zen 4) the scan of 2,552 x 784 float16 rows took 0.13 ms at the median, the float16 graph 0.16, so just
above the threshold the hybrid lost to an exact flat index (p95 1.2x) where on the earlier machine it
won. So when a graph exists the index times both paths on queries near its own rows and keeps the scan
while it is faster: :func:`exact_limit` says up to how many rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["MAX_GROWTH", "exact_limit", "probe_queries"]

QUERIES = 24  # timed on both paths; the 90th percentile over them is compared
REPEATS = 3  # each query's fastest of this many (a burst of load on the shared machine is not the path)
MAX_GROWTH = 1.5  # the scan is never kept past this many times the HNSW threshold, nor measured there
PERCENTILE = 90
MARGIN = 1.2  # the scan is kept only when this much faster: a close call goes to the graph, whose time
# grows far slower with the rows (a wrong scan at 2x the threshold cost 1.7x HNSW-flat's p95 here)
CLEAR_WIN = 3.0  # after one pass, a graph this many times faster than the scan ends the measurement


def exact_limit(
    rows: int,
    exact: Callable[[np.ndarray], Any],
    graph: Callable[[np.ndarray], Any],
    queries: np.ndarray,
    *,
    repeats: int = REPEATS,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """The number of rows below which ``exact`` answers faster than ``graph`` here (0: the graph is
    faster already), measured at ``rows`` rows: each query of ``queries`` (one per call, as a request
    makes it) goes through both paths ``repeats`` times, interleaved, keeping its fastest time; the
    paths' 90th percentiles over the queries are compared. A scan's work grows with the rows and the
    graph's barely, so the scan stays the faster one up to ``rows * graph / exact``; it is kept only
    when :data:`MARGIN` times faster (the caller caps the result at :data:`MAX_GROWTH` thresholds)."""
    if len(queries) == 0 or repeats < 1:
        raise ValueError("exact_limit needs at least one query and one repeat")
    best_exact = np.full(len(queries), np.inf)
    best_graph = np.full(len(queries), np.inf)
    for repeat in range(repeats):
        if repeat == 1 and _p90(best_graph) * CLEAR_WIN < _p90(best_exact):
            return 0  # the graph wins by far already: no need to scan the rows again
        for i in range(len(queries)):
            q = queries[i : i + 1]
            t0 = clock()
            exact(q)
            t1 = clock()
            graph(q)
            t2 = clock()
            best_exact[i] = min(best_exact[i], t1 - t0)
            best_graph[i] = min(best_graph[i], t2 - t1)
    scan, walk = _p90(best_exact), _p90(best_graph)
    if scan <= 0.0 or walk <= MARGIN * scan:
        return 0
    return int(rows * walk / scan)


def probe_queries(rows: np.ndarray, count: int = QUERIES, seed: int = 0) -> np.ndarray:
    """``count`` unit query vectors near stored ``rows`` (float16 or float32, ``(n, d)``): evenly spaced
    rows plus as much noise again, so that a query is not one of the rows (the graph would find it at
    once) yet lies where the data is."""
    n, dim = rows.shape
    picks = np.linspace(0, n - 1, num=min(count, n)).astype(np.int64)
    rng = np.random.default_rng(seed)
    q = rows[picks].astype(np.float32)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    q += rng.standard_normal(q.shape, dtype=np.float32) / np.float32(np.sqrt(dim))
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(q, dtype=np.float32)


def _p90(times: np.ndarray) -> float:
    return float(np.percentile(times, PERCENTILE))
