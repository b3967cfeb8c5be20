"""``wavegraph bench graphwave``: our GraphWave against a reference built on pygsp's heat filters.

Both sides embed the same graph (the largest connected component of pygsp's Minnesota road network,
2,640 nodes, or of ``--edges``; ``--quick``: a 1,000-node breadth-first ball of it) at the same scales
(chosen from the spectrum, :func:`~wavegraph.processors.graph.graphwave.auto_scales`), the same time
points and the same Chebyshev degree (the one our ``tol = 1e-10`` picks), in one run:

* ``ours``: :func:`~wavegraph.processors.graph.graphwave.graphwave` (sparse-while-local Chebyshev
  recurrence, characteristic function over stored entries);
* ``pygsp_heat`` (the reference, headline): ``pygsp.filters.Heat`` filtering the N delta signals with
  pygsp's Chebyshev method (``G.lmax`` = 2, the normalised Laplacian's bound, so pygsp's
  ``scale = s · lmax``), then the characteristic function the textbook way, vectorised in NumPy:
  ``cos(tΨ).mean(0)`` and ``sin(tΨ).mean(0)`` for each ``t``;
* ``pygsp_heat_fast_embed``: the same pygsp wavelets followed by *our* dense characteristic function
  (power sums), to show how much of the gap is the wavelets and how much the embedding;
* ``exact``: dense eigendecomposition (``numpy.linalg.eigh``), the accuracy reference.

``rel_error`` is ``‖Φ − Φ_exact‖₂ / ‖Φ_exact‖₂``. Times are the best of ``repeats`` runs, interleaved.
``ratio`` = reference time ÷ ours (goal ≥ 5 at equal accuracy). A GPU row is added when CuPy sees a GPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph

from wavegraph.errors import MissingPrerequisite
from wavegraph.processors.graph import graphwave as gw
from wavegraph.processors.graph.state import GraphState
from wavegraph.report import build_report, detect_gpu_name, write_report

QUICK_NODES = 1000
N_SCALES = 3
TOL = 1e-10


def minnesota_adjacency() -> sp.csr_matrix:
    """pygsp's Minnesota road network (2,642 nodes, 3,304 edges) as a symmetric 0/1 CSR matrix, read
    from the package's ``data/pointclouds/minnesota.mat`` (pygsp's own loader warns with SciPy ≥ 1.15)."""
    try:
        import pygsp
    except ImportError as exc:
        raise MissingPrerequisite("the graph benches need pygsp: pip install 'wavegraph[graph]'") from exc
    path = Path(pygsp.__file__).parent / "data" / "pointclouds" / "minnesota.mat"
    a = sp.csr_matrix(scipy.io.loadmat(path)["A"], dtype=np.float64)
    a = sp.csr_matrix(((a + a.T) > 0).astype(np.float64))
    a.setdiag(0.0)
    a.eliminate_zeros()
    return a


def largest_component(a: sp.csr_matrix) -> sp.csr_matrix:
    """The subgraph induced by the largest connected component."""
    _, labels = csgraph.connected_components(a, directed=False)
    keep = np.flatnonzero(labels == np.argmax(np.bincount(labels)))
    return sp.csr_matrix(a[keep][:, keep])


def bfs_ball(a: sp.csr_matrix, size: int, root: int = 0) -> sp.csr_matrix:
    """The subgraph induced by the first ``size`` nodes of a breadth-first search from ``root``."""
    order = csgraph.breadth_first_order(a, root, directed=False, return_predecessors=False)
    keep = np.sort(order[:size])
    return sp.csr_matrix(a[keep][:, keep])


def pygsp_wavelets(a: sp.csr_matrix, scales: tuple[float, ...], order: int) -> np.ndarray:
    """Heat wavelets ``(n_scales, N, N)`` by ``pygsp.filters.Heat`` (Chebyshev, degree ``order``) applied
    to the N delta signals; column ``j`` of each is the wavelet centred at node ``j``."""
    from pygsp import filters, graphs

    g = graphs.Graph(sp.csr_matrix(a, dtype=np.float64), lap_type="normalized")
    g.estimate_lmax(method="bounds")  # 2 for the normalised Laplacian
    bank = filters.Heat(g, scale=[s * g.lmax for s in scales])  # pygsp: exp(-scale * λ / lmax)
    out = bank.filter(np.eye(g.N), method="chebyshev", order=order)  # (node, signal, filter)
    return np.moveaxis(out.reshape(g.N, g.N, len(scales)), 2, 0)


def textbook_embedding(wavelets: np.ndarray, time_points: tuple[float, ...]) -> np.ndarray:
    """φ_a(t) = mean_m exp(i t Ψ_ma) with one ``cos``/``sin`` pass over Ψ per ``t`` (the reference)."""
    parts = []
    for psi in wavelets:
        re = np.stack([np.cos(t * psi).mean(axis=0) for t in time_points], axis=1)
        im = np.stack([np.sin(t * psi).mean(axis=0) for t in time_points], axis=1)
        parts += [re, im]
    return np.concatenate(parts, axis=1)


def run_graphwave_bench(
    quick: bool = False,
    out: Path | None = None,
    edges: Path | None = None,
    *,
    repeats: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the bench, write the JSON report (default ``bench/results/graphwave.json``), print the table
    and return the report."""
    say = on_step or (lambda _msg: None)
    if edges is not None:
        a = gw.undirected_adjacency(GraphState.from_edge_list(edges))
        name = edges.name
    else:
        a, name = minnesota_adjacency(), "minnesota"
    a = largest_component(a)
    if quick and a.shape[0] > QUICK_NODES:
        a, name = bfs_ball(a, QUICK_NODES), f"{name}_bfs{QUICK_NODES}"
    reps = repeats or 2
    say("scales")
    scales = tuple(float(s) for s in gw.auto_scales(a, N_SCALES))
    order = gw.chebyshev_order(scales, TOL)
    t_pts = gw.DEFAULT_TIME_POINTS

    say("exact eigendecomposition")
    t0 = time.perf_counter()
    exact = gw.graphwave_exact(a, scales, t_pts)
    exact_s = time.perf_counter() - t0
    norm = float(np.linalg.norm(exact))

    best: dict[str, float] = {"ours": np.inf, "wavelets": np.inf, "textbook": np.inf, "fast": np.inf}
    ours_emb = ref_emb = fast_emb = exact
    for rep in range(reps):
        say(f"ours ({rep + 1}/{reps})")
        t0 = time.perf_counter()
        ours_emb = gw.graphwave(a, scales=scales, time_points=t_pts, order=order).vectors
        best["ours"] = min(best["ours"], time.perf_counter() - t0)
        say(f"pygsp reference ({rep + 1}/{reps})")
        t0 = time.perf_counter()
        wavelets = pygsp_wavelets(a, scales, order)
        t1 = time.perf_counter()
        ref_emb = textbook_embedding(wavelets, t_pts)
        t2 = time.perf_counter()
        fast_emb = gw.characteristic_embedding(wavelets, t_pts)
        t3 = time.perf_counter()
        best["wavelets"] = min(best["wavelets"], t1 - t0)
        best["textbook"] = min(best["textbook"], t2 - t1)
        best["fast"] = min(best["fast"], t3 - t2)
        del wavelets

    def err(x: np.ndarray) -> float:
        return float(np.linalg.norm(x - exact) / norm)

    ref_s = best["wavelets"] + best["textbook"]
    common = {"graph": name, "nodes": int(a.shape[0]), "edges": int(a.nnz // 2), "order": order}
    rows: list[dict[str, Any]] = [
        {"case": "ours_cpu", **common, "total_s": best["ours"], "wavelet_s": None, "embed_s": None,
         "rel_error": err(ours_emb)},
        {"case": "pygsp_heat", **common, "total_s": ref_s, "wavelet_s": best["wavelets"],
         "embed_s": best["textbook"], "rel_error": err(ref_emb)},
        {"case": "pygsp_heat_fast_embed", **common, "total_s": best["wavelets"] + best["fast"],
         "wavelet_s": best["wavelets"], "embed_s": best["fast"], "rel_error": err(fast_emb)},
        {"case": "exact_eigh", **common, "total_s": exact_s, "wavelet_s": None, "embed_s": None,
         "rel_error": 0.0},
    ]  # fmt: skip
    if detect_gpu_name() is not None:
        say("ours on the GPU")
        gw.graphwave(a, scales=scales, time_points=t_pts, order=order, device="gpu")  # warm-up
        t0 = time.perf_counter()
        gpu_emb = gw.graphwave(a, scales=scales, time_points=t_pts, order=order, device="gpu").vectors
        rows.append({"case": "ours_gpu", **common, "total_s": time.perf_counter() - t0, "wavelet_s": None,
                     "embed_s": None, "rel_error": err(gpu_emb)})  # fmt: skip
    params = {
        "graph": name, "nodes": int(a.shape[0]), "edges": int(a.nnz // 2), "quick": quick,
        "scales": list(scales), "time_points": len(t_pts), "order": order, "tol": TOL, "repeats": reps,
    }  # fmt: skip
    report = build_report("graphwave", params, rows, ref_s / best["ours"])
    write_report(report, out)
    return report
