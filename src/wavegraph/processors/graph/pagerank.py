r"""PageRank: a full power iteration and an incremental residual-push engine ("TPL").

Conventions (those of ``networkx.pagerank`` without personalization): damping ``α`` (0.85), ``n`` nodes,
weights ``w(u → v) ≥ 0``, out-weight ``d_u = Σ_v w(u → v)``. A node with ``d_u = 0`` is *dangling*.
The transition matrix is row-stochastic::

    P[u, v] = w(u → v) / d_u      if d_u > 0
    P[u, v] = 1 / n               if u is dangling (its mass is spread uniformly)

and PageRank is the probability vector ``x`` with ``x = α Pᵀ x + (1 − α)/n · 1`` (uniform teleport).
Self-loops are ordinary edges (networkx keeps them in the matrix too).

**Full recompute** (:func:`pagerank`): power iteration ``x ← α Pᵀ x + (1 − α)/n`` from the uniform vector.
The map is an ``α``-contraction in L1 on probability vectors, so after a step
``‖x_{k+1} − x*‖₁ ≤ α/(1 − α) · ‖x_{k+1} − x_k‖₁``; we stop when that bound is ≤ ``tol``. ``tol`` is
therefore a guaranteed bound on the L1 distance to the exact PageRank.

**Incremental update** (:class:`IncrementalPageRank`). Drop the normalisation and solve the linear system

    (I − α Pᵀ) z = 1                                              (1)

Its solution is ``z* = n/(1 − α) · x*`` (multiply the PageRank equation by ``n/(1 − α)``), so
``x* = z*/‖z*‖₁``. The right-hand side no longer depends on ``n``: a new node simply enters with
``z = 0``. Any multiple ``ρ·1`` of it has the solution ``ρ z*``, the same PageRank, so we keep an estimate
``z``, a scalar ``ρ > 0`` and the exact residual ``r = ρ·1 − (I − α Pᵀ) z``.

* *Push* at node ``u``: ``z_u += r_u``, ``r_u = 0`` and ``r_v += α P[u, v] r_u`` for every ``v``; this keeps
  the invariant. For a dangling ``u`` the push adds the uniform vector ``α r_u / n · 1`` to ``r``; we lower
  ``ρ`` by ``α r_u / n`` instead, which is the same residual. A sweep collects the frontier
  ``{u : |r_u| > θ f_u}`` and pushes it in index order with the current ``r_u`` (Gauss–Seidel: later
  pushes see earlier ones). ``f_u ∈ [0.1, 1]`` grows with the out-degree (``√`` of it over 10× the mean):
  a push costs the node's row, so cheap rows go at a lower threshold (10–20 % fewer edges pushed).
  ``θ`` starts at a tenth of ``max|r|`` (capped at 10× the mean ``|r_u|``) and halves after each level
  (large residuals first, as in Gauss–Southwell), down to the floor below which (2') is guaranteed
  (``f_u ≤ 1``: a level at the floor pushes every ``|r_u|`` above it).
* *One pass over the nodes per level*: the pass that recentres ``r`` and measures it (below) also
  collects the next level's frontier for the threshold the schedule predicts from the previous pass; it
  is used when the real ``θ`` agrees (always, but for the first level and a rescale), so a level costs
  its pushes plus one O(n) pass, not two. A sparse frontier's rows lie scattered in memory: the push
  kernel prefetches the row of the frontier node 8 places ahead (2–4× less time per edge at a 2–10 %
  frontier in isolation, nothing at a full one).
* *Uniform residual is free*: subtracting ``c·1`` from ``r`` and from ``ρ`` keeps the invariant. Before
  each level we do so with ``c = mean(r)`` (if ``ρ`` stays > 0). This keeps ``Σ r = 0``, which removes
  the component of ``r`` along the stationary vector of ``Pᵀ`` (eigenvalue 1): the rest decays at the
  rate of the second eigenvalue, as in power iteration, instead of at rate ``α``. (``z``, ``r`` and
  ``ρ`` are rescaled together when ``ρ`` leaves ``[1/4, 4]``.)
* *Error bound*: ``M = (I − α Pᵀ)⁻¹ = Σ_k (α Pᵀ)^k`` and ``Pᵀ`` is column-stochastic, so
  ``‖M‖₁ ≤ 1/(1 − α)`` and ``1ᵀ M = 1ᵀ/(1 − α)``. From the invariant, ``z = ρ z* − M r``, so
  ``x* = (z + e)/‖z + e‖₁`` with ``e = M r``, ``‖e‖₁ ≤ ‖r‖₁/(1 − α)`` and ``Σ e = Σ r/(1 − α)``.
  For ``x = z/‖z‖₁``::

      ‖x − x*‖₁ ≤ 2 ‖e‖₁ / ‖z‖₁ ≤ 2 ‖r‖₁ / ((1 − α) ‖z‖₁)                         (2)

  and, when ``z ≥ 0`` (then ``‖z + e‖₁ = ‖z‖₁ + Σ e`` since ``z + e = ρ z* ≥ 0``)::

      ‖x − x*‖₁ ≤ (‖e‖₁ + |Σ e|) / (‖z‖₁ + Σ e) ≤ (‖r‖₁ + |Σ r|) / ((1 − α) ‖z‖₁ − |Σ r|)   (2')

  which is ``‖r‖₁ / ((1 − α) ‖z‖₁)`` once ``Σ r = 0``. Pushing stops when the bound is ≤ ``tol``; the
  result is then within ``tol`` of the exact PageRank in L1, like the full recompute.
* *Edge changes*: only the rows ``P[u, ·]`` of the changed sources ``u`` move, so
  ``r_v += α z_u (P_new[u, v] − P_old[u, v])``: subtract each changed source's old out-row scaled by
  ``α z_u / d_u`` and add its new one — work proportional to those rows, not to the graph. Dangling rows
  are the uniform ``1/n``: they add the scalar ``α D/n`` to every ``r_v`` (``D`` = the dangling nodes'
  total ``z``); its change to ``α D'/n'`` goes into ``ρ`` (``ρ' = ρ − α (D'/n' − D/n)``).
* *Node insertions* change ``n``. In (1) a new node has ``z = 0`` and ``r = ρ' + α D'/n' +`` (the pushes
  its in-edges bring, already counted by the changed rows of their sources); the old nodes only see the
  dangling scalar, now in ``ρ``. Nothing else depends on ``n``, so the update is exact.
* When the changed rows hold more than half of the edges, ``r`` is recomputed from ``z`` by scattering
  every row once instead (cheaper than walking most rows twice); it is also recomputed every ``resync_every``
  updates, which washes out floating-point drift.

The push runs in numba kernels when numba is installed (the ``graph`` extra brings it with pecanpy);
otherwise a vectorised numpy frontier (all nodes above ``θ`` pushed at once, Jacobi-style) does the same
job more slowly.

What to expect: the work of an update is a few passes over the edges (each level pushes a fraction of
the nodes), against ~30 sparse products for the power iteration at ``tol = 1e-7``. Most of that gain
comes from the push solver itself; reusing the previous ``z`` saves the levels that would take ``r`` from
``1`` down to the size of the batch's perturbation (see ``push_scratch_s`` in ``wavegraph bench tpl``).
A micro-batch does not make the update proportional to the batch: 100 changes on a 1 M-edge power-law
graph put ~60 (z units) into ``r``, and ``tol = 1e-7`` needs ``‖r‖₁ ≈ 0.01``; the residual spreads to a
quarter of the nodes within a few hops and halves per level, so ~14 levels push ~2 E edges (the power
iteration: ~33 E), about 5× less time than the full recompute on the bench machine, not 20×.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from wavegraph.errors import MissingPrerequisite, WavegraphError
from wavegraph.processors.graph.state import CSRGraph, EdgeList, GraphState

numba: Any
try:
    import numba
except ImportError:  # pragma: no cover - numba comes with the graph extra
    numba = None

__all__ = [
    "HAVE_NUMBA",
    "IncrementalPageRank",
    "UpdateStats",
    "pagerank",
    "pagerank_scores",
]

HAVE_NUMBA = numba is not None
Engine = Literal["auto", "numba", "numpy"]
FloatArray = npt.NDArray[np.float64]

_MAX_SWEEPS = 100_000
_RESIDUAL_FROM_SCRATCH = 0.5  # changed rows (old + new) above this share of E: recompute r


@dataclass(frozen=True)
class _Schedule:
    """Push thresholds: ``θ₀ = first · max|r|``, then ``θ ← step · θ`` after each level of at most
    ``sweeps`` sweeps, never above ``cap`` times the mean ``|r_u|`` nor below the floor that (2) needs.

    Node ``u`` is pushed when ``|r_u| > θ f_u`` with ``f_u = clip(√((d_u + 1)/(reach (d̄ + 1))),
    lowest, 1)`` (``d`` the out-degree, ``d̄`` its mean): a push costs the node's row, so cheap rows go at
    a lower threshold; ``f_u ≤ 1`` keeps the floor's guarantee."""

    first: float = 0.1
    step: float = 0.5
    sweeps: int = 1
    cap: float = 10.0
    reach: float = 10.0
    lowest: float = 0.1

    def factors(self, g: CSRGraph) -> FloatArray:
        """``f_u`` for every node of ``g``."""
        degree = np.diff(g.indptr).astype(np.float64)
        mean = g.num_edges / max(1, g.num_nodes)
        return np.clip(np.sqrt((degree + 1.0) / (self.reach * (mean + 1.0))), self.lowest, 1.0)


# Tuned on the bench graphs by edges pushed: an update's residual is already small and local, one sweep
# per level suffices; a solve from z = 0 (``start="push"``) does better with three. The degree factors
# (reach 10, lowest 0.1) cut the edges pushed by 10–20 % at ΔE 0.01–20 % on the 1 M-edge bench graph
# (0.66–0.89 of the time there, ~0.97 on the quick graph, which fits in cache).
_UPDATE_SCHEDULE = _Schedule(sweeps=1)
_SCRATCH_SCHEDULE = _Schedule(sweeps=3)


# -- full recompute -----------------------------------------------------------------------------------
def pagerank(
    graph: CSRGraph | GraphState | sp.sparray | sp.spmatrix,
    *,
    damping: float = 0.85,
    tol: float = 1e-10,
    method: Literal["power", "push"] = "power",
    engine: Engine = "auto",
) -> FloatArray:
    """PageRank of every node (indexed like the graph), summing to 1, within ``tol`` in L1 of the exact
    vector. ``method="power"``: power iteration (see the module docstring); ``"push"``: the incremental
    engine started from ``z = 0`` (the whole graph as one batch)."""
    g = _as_csr(graph)
    _check_params(damping, tol)
    if method == "push":
        return IncrementalPageRank(g, damping=damping, tol=tol, engine=engine, start="push").scores()
    if method != "power":
        raise ValueError(f"method must be 'power' or 'push', got {method!r}")
    return _power_iteration(g, damping, tol)


def pagerank_scores(
    edges: EdgeList | GraphState | str | os.PathLike[str],
    *,
    damping: float = 0.85,
    tol: float = 1e-10,
) -> dict[str, float]:
    """``{node id: PageRank}`` of an edge list (an :class:`EdgeList`, a :class:`GraphState` or the path
    of a CSV/TSV file ``src,dst[,weight]``), in order of first appearance of the ids."""
    if isinstance(edges, GraphState):
        state = edges
    elif isinstance(edges, EdgeList):
        state = GraphState.from_edges(edges.src, edges.dst, edges.weight)
    else:
        state = GraphState.from_edge_list(Path(edges))
    x = pagerank(state, damping=damping, tol=tol)
    return dict(zip(state.node_ids, x.tolist(), strict=True))


def _power_iteration(g: CSRGraph, alpha: float, tol: float) -> FloatArray:
    n = g.num_nodes
    if n == 0:
        return np.empty(0, np.float64)
    x = np.full(n, 1.0 / n)
    if alpha == 0.0:
        return x
    pt = g.to_scipy().T  # CSC view of Aᵀ, no copy
    dangling = g.out_weight == 0.0
    inv_d = np.divide(1.0, g.out_weight, out=np.zeros(n), where=~dangling)
    # ‖x_k − x*‖₁ ≤ 2 α^k always: past this many steps the answer is within tol whatever the stop test says.
    max_iter = max(1, math.ceil(math.log(tol / 2.0) / math.log(alpha)) + 1)
    stop = tol * (1.0 - alpha) / alpha
    for _ in range(max_iter):
        nxt = pt @ (x * inv_d)
        nxt *= alpha
        nxt += (alpha * x[dangling].sum() + 1.0 - alpha) / n
        delta = float(np.abs(nxt - x).sum())
        x = nxt
        if delta <= stop:
            break
    x /= x.sum()
    return x


# -- incremental engine -------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpdateStats:
    """What one :meth:`IncrementalPageRank.update` (or the initial solve) cost and reached."""

    sweeps: int
    pushes: int
    edges_pushed: int
    error_bound: float


class IncrementalPageRank:
    """PageRank kept current under edge insertions, deletions and new nodes (see the module docstring).

    >>> state = GraphState.from_edges(["a", "b"], ["b", "c"])
    >>> pr = IncrementalPageRank(state.snapshot())
    >>> change = state.add_edges(["c"], ["a"])
    >>> stats = pr.update(state.snapshot(), change.changed_sources)
    >>> round(float(pr.scores().sum()), 12)
    1.0

    ``tol`` bounds the L1 distance of :meth:`scores` to the exact PageRank after every update.
    ``start="power"`` solves the first graph by power iteration, ``"push"`` by pushing from ``z = 0``.
    """

    def __init__(
        self,
        graph: CSRGraph,
        *,
        damping: float = 0.85,
        tol: float = 1e-8,
        engine: Engine = "auto",
        start: Literal["power", "push"] = "power",
        resync_every: int = 100,
    ) -> None:
        _check_params(damping, tol)
        self.damping = damping
        self.tol = tol
        self.engine = _resolve_engine(engine)
        self.resync_every = resync_every
        self._kernels = _kernels(self.engine)
        self._graph = graph
        self._updates = 0
        n = graph.num_nodes
        self._rho = 1.0  # the scalar ρ of r = ρ·1 − (I − α Pᵀ) z
        if start == "power":
            x = _power_iteration(graph, damping, tol / 8.0)
            self._z: FloatArray = x * (n / (1.0 - damping))
            self._r: FloatArray = _residual(graph, self._z, damping, self._rho, self._kernels)
        elif start == "push":
            self._z = np.zeros(n)
            self._r = np.ones(n)
        else:
            raise ValueError(f"start must be 'power' or 'push', got {start!r}")
        self.last_stats = self._solve(_SCRATCH_SCHEDULE if start == "push" else _UPDATE_SCHEDULE)

    @property
    def graph(self) -> CSRGraph:
        """The snapshot the scores belong to."""
        return self._graph

    @property
    def num_nodes(self) -> int:
        return self._graph.num_nodes

    def scores(self) -> FloatArray:
        """PageRank by node index (a new array summing to 1)."""
        norm = float(np.abs(self._z).sum())
        if norm == 0.0:
            return np.full(self._z.shape[0], 1.0 / max(1, self._z.shape[0]))
        return self._z / norm

    def copy(self) -> IncrementalPageRank:
        """An independent engine in the same state (the snapshot is shared, it is immutable)."""
        other = object.__new__(IncrementalPageRank)
        other.__dict__.update(self.__dict__)
        other._z = self._z.copy()
        other._r = self._r.copy()
        return other

    def update(self, graph: CSRGraph, changed_sources: npt.ArrayLike) -> UpdateStats:
        """Move to ``graph``, which differs from the current snapshot only in the out-rows of
        ``changed_sources`` (node indices; :attr:`GraphChange.changed_sources`) and possibly in new nodes
        appended at the end."""
        old, alpha = self._graph, self.damping
        n0, n1 = old.num_nodes, graph.num_nodes
        if n1 < n0:
            raise ValueError(f"nodes are never removed: the new graph has {n1} < {n0} nodes")
        sources = np.asarray(changed_sources, dtype=np.int64).reshape(-1)
        if sources.size > 1 and not bool(np.all(sources[1:] > sources[:-1])):
            sources = np.unique(sources)  # GraphChange already gives them sorted and unique
        if sources.size and (sources[0] < 0 or sources[-1] >= n1):
            raise ValueError("changed_sources holds indices outside the graph")
        z = self._z if n1 == n0 else np.concatenate([self._z, np.zeros(n1 - n0)])
        # Dangling rows add the scalar α D/n (D = Σ z over dangling nodes) to every node; its change is
        # folded into ρ, so the old nodes' r does not move: ρ' = ρ − α (D'/n' − D/n).
        old_uniform = alpha * float(z[:n0][old.out_weight == 0.0].sum()) / n0 if n0 else 0.0
        new_uniform = alpha * float(z[graph.out_weight == 0.0].sum()) / n1 if n1 else 0.0
        rho = self._rho - (new_uniform - old_uniform)
        old_rows = sources[sources < n0]
        row_edges = _row_edges(old, old_rows) + _row_edges(graph, sources)
        self._graph, self._z, self._rho = graph, z, rho
        self._updates += 1
        if row_edges > _RESIDUAL_FROM_SCRATCH * graph.num_edges or (
            self.resync_every and self._updates % self.resync_every == 0
        ):
            # Most rows changed: one pass over every row is cheaper than walking them twice.
            self._r = _residual(graph, z, alpha, rho, self._kernels)
        else:
            # A new node starts with z = 0, so r = ρ' + α D'/n' (plus what its in-edges bring below).
            r = self._r if n1 == n0 else np.concatenate([self._r, np.full(n1 - n0, rho + new_uniform)])
            # Non-dangling rows of the changed sources: −old row, +new row (each scaled by α z_u / d_u).
            self._kernels.rows(old, z, old_rows, -alpha, r)
            self._kernels.rows(graph, z, sources, alpha, r)
            self._r = r
        self.last_stats = self._solve()
        return self.last_stats

    def resync(self) -> UpdateStats:
        """Recompute the residual exactly from ``z`` (one O(E) pass) and push it below ``tol`` again."""
        self._r = _residual(self._graph, self._z, self.damping, self._rho, self._kernels)
        self.last_stats = self._solve()
        return self.last_stats

    def _solve(self, schedule: _Schedule | None = None) -> UpdateStats:
        """Push until the bound (2') is ≤ ``tol``, in levels of sweeps with a falling threshold ``θ``.

        Invariant: ``r = ρ·1 − (I − α Pᵀ) z``. A dangling push's uniform spread ``α δ/n · 1`` and the
        recentring shift ``c·1`` go into ρ instead of into every ``r_v`` (a uniform residual is free), so
        a level costs its pushes plus one pass over the nodes."""
        g, alpha, tol, k = self._graph, self.damping, self.tol, self._kernels
        schedule = schedule or _UPDATE_SCHEDULE
        z, r = self._z, self._r
        n = g.num_nodes
        if n == 0:
            return UpdateStats(0, 0, 0, 0.0)
        dangling = g.out_weight == 0.0
        scale = np.divide(alpha, g.out_weight, out=np.zeros(n), where=~dangling)
        sweeps = pushes = edges = 0
        theta = guess = -1.0
        total = float(r.sum())
        z_nonzero = bool(np.any(z))
        front = np.empty(n, np.int64)
        factor = schedule.factors(g)
        while True:
            # Recentre (c = mean r) when the result keeps ρ > 0: afterwards Σ r = 0.
            c = total / n if z_nonzero and total / n < 0.5 * self._rho else 0.0
            self._rho -= c
            # The settle pass also collects the frontier for a guess of the next θ (the schedule applied
            # to the previous pass's figures); the guess is used when it is close to the real θ below.
            abs_r, max_r, total, abs_z, min_z, size = k.settle(
                z, r, c, guess if guess > 0.0 else math.inf, factor, front
            )
            if not 0.25 <= self._rho <= 4.0:  # keep the scale of z near n/(1 − α): rescale everything
                inv = 1.0 / self._rho
                z *= inv
                r *= inv
                self._rho = 1.0
                abs_r, max_r, total, abs_z, min_z = (
                    abs_r * inv,
                    max_r * inv,
                    total * inv,
                    abs_z * inv,
                    min_z * inv,
                )
                size = -1
            bound = _error_bound(abs_r, total, abs_z, min_z, alpha, self._rho)
            if bound <= tol:
                return UpdateStats(sweeps, pushes, edges, bound)
            if sweeps >= _MAX_SWEEPS:
                raise WavegraphError(f"PageRank push did not converge in {_MAX_SWEEPS} sweeps")
            # With |r_u| ≤ floor everywhere (and Σ r ≈ 0), ‖r‖₁ ≤ n · floor meets the bound.
            floor = tol * (1.0 - alpha) * abs_z / (n if min_z >= 0.0 else 2.0 * n) / 1.01
            want = schedule.first * max_r if theta < 0.0 else theta * schedule.step
            want = max(min(want, schedule.cap * abs_r / n), floor)
            # The guess may push a little more than wanted, never skip the floor's nodes.
            if size >= 0 and want / 4.0 <= guess <= (1.5 * want if want > floor else floor):
                theta = guess
            else:
                theta, size = want, -1
            done_sweeps, done_pushes, done_edges, pushed, pushed_dangling = k.level(
                g, scale, dangling, z, r, theta, factor, schedule.sweeps, front, size
            )
            guess = max(min(theta * schedule.step, schedule.cap * abs_r / n), floor / 1.05)
            # A push of δ lowers Σ r by (1 − α) δ, or by δ at a dangling node (its spread went to ρ).
            self._rho -= alpha * pushed_dangling / n
            total -= (1.0 - alpha) * (pushed - pushed_dangling) + pushed_dangling
            z_nonzero = z_nonzero or done_pushes > 0
            sweeps += done_sweeps
            pushes += done_pushes
            edges += done_edges


def _error_bound(abs_r: float, sum_r: float, abs_z: float, min_z: float, alpha: float, rho: float) -> float:
    """Bound on ‖z/‖z‖₁ − x*‖₁ from the residual (module docstring, (2) and (2')).

    With ``e = M r`` (so ``x* ∝ z + e``, ``‖e‖₁ ≤ ‖r‖₁/(1 − α)``, ``Σ e = Σ r/(1 − α)``) and ``z ≥ 0``:
    ``‖x − x*‖₁ ≤ (‖e‖₁ + |Σ e|)/(‖z‖₁ + Σ e) ≤ (‖r‖₁ + |Σ r|)/((1 − α)‖z‖₁ − |Σ r|)``   (2'),
    which is about ``‖r‖₁/((1 − α)‖z‖₁)`` once ``Σ r = 0``; otherwise (2) ``2‖r‖₁/((1 − α)‖z‖₁)``.
    Both need ``ρ > 0`` (then ``z + e = ρ z*`` with ``z*`` the solution for the right-hand side 1).
    """
    if abs_z <= 0.0 or rho <= 0.0:
        return math.inf
    loose = 2.0 * abs_r / ((1.0 - alpha) * abs_z)
    if min_z < 0.0:
        return loose
    denominator = (1.0 - alpha) * abs_z - abs(sum_r)
    if denominator <= 0.0:
        return loose
    return min(loose, (abs_r + abs(sum_r)) / denominator)


def _row_edges(g: CSRGraph, rows: npt.NDArray[np.int64]) -> int:
    return int((g.indptr[rows + 1] - g.indptr[rows]).sum()) if rows.size else 0


def _residual(g: CSRGraph, z: FloatArray, alpha: float, rho: float, kernels: _Kernels) -> FloatArray:
    """``ρ·1 − (I − α Pᵀ) z`` computed from scratch: every row scattered once by the same kernel that
    moves changed rows (in numba, one pass over the edges; a scipy product first converts the graph and
    transposes it, which took longer than the product itself)."""
    n = g.num_nodes
    if n == 0:
        return np.empty(0, np.float64)
    uniform = alpha * float(z[g.out_weight == 0.0].sum()) / n
    r = (rho + uniform) - z
    kernels.rows(g, z, np.arange(n, dtype=np.int64), alpha, r)
    return r


# -- kernels ------------------------------------------------------------------------------------------
_PREFETCH_AHEAD = 8  # rows: a push of a 10-edge row takes about as long as a cache miss


def _no_prefetch(array: Any, index: int) -> None:
    """Hint the CPU to load ``array[index]`` into the caches (a no-op outside numba)."""


_prefetch: Any = _no_prefetch


if HAVE_NUMBA:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _prefetch_intrinsic(typingctx: Any, array: Any, index: Any) -> Any:
        """``llvm.prefetch(&array[index], read, high locality, data)``: a hint, it never faults."""
        sig = numba.types.void(array, index)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            array_type = signature.args[0]
            view = context.make_array(array_type)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, array_type, view, [args[1]], wraparound=False)
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return sig, codegen

    _prefetch = _prefetch_intrinsic


# Written as plain loops so that numba can compile them; the numpy engine has vectorised equivalents.
def _level_loop(
    indptr: Any,
    indices: Any,
    weights: Any,
    scale: Any,
    dangling: Any,
    z: Any,
    r: Any,
    theta: float,
    factor: Any,
    max_sweeps: int,
    front: Any,
    first_size: int,
) -> tuple[int, int, int, float, float]:
    """Up to ``max_sweeps`` sweeps; each collects the frontier ``{u : |r_u| > θ f_u}`` (a branch-free pass)
    and pushes it in index order with the current ``r_u`` (Gauss–Seidel: a node pushed later sees the
    pushes before it). ``first_size ≥ 0`` says ``front[:first_size]`` already holds the first sweep's
    frontier (collected by the settle pass). A dangling node's spread is left to the caller (it goes into
    ρ). Stops early on an empty frontier. Returns (sweeps, pushes, edges scanned, Σ δ pushed, Σ δ pushed
    at dangling nodes)."""
    n = z.shape[0]
    sweeps = 0
    pushes = 0
    edges = 0
    pushed = 0.0
    pushed_dangling = 0.0
    for sweep in range(max_sweeps):
        size = first_size
        if sweep > 0 or size < 0:
            size = 0
            for u in range(n):
                front[size] = u
                size += abs(r[u]) > theta * factor[u]
        if size == 0:
            break
        sweeps += 1
        pushes += size
        for k in range(size):
            if k + _PREFETCH_AHEAD < size:  # a sparse frontier's rows are scattered: fetch them early
                ahead = indptr[front[k + _PREFETCH_AHEAD]]
                _prefetch(indices, ahead)
                _prefetch(weights, ahead)
            u = front[k]
            ru = r[u]
            z[u] += ru
            r[u] = 0.0
            pushed += ru
            if dangling[u]:
                pushed_dangling += ru
                continue
            f = ru * scale[u]
            lo = indptr[u]
            hi = indptr[u + 1]
            for e in range(lo, hi):  # unsigned: numba drops its negative-index wraparound branch
                r[np.uint32(indices[e])] += f * weights[e]  # (-20 % time per edge scattered)
            edges += hi - lo
    return sweeps, pushes, edges, pushed, pushed_dangling


def _settle_loop(
    z: Any, r: Any, c: float, theta: float, factor: Any, front: Any
) -> tuple[float, float, float, float, float, int]:
    """``r ← r − c``; returns ``(Σ |r|, max |r|, Σ r, Σ |z|, min z, size)`` in the same pass (``n ≥ 1``),
    with ``front[:size]`` the nodes where ``|r_u| > θ f_u`` afterwards: the next level's first frontier,
    collected here so that a level costs one pass over the nodes instead of two."""
    abs_r = 0.0
    max_r = 0.0
    total = 0.0
    abs_z = 0.0
    min_z = z[0]
    size = 0
    for i in range(r.shape[0]):
        v = r[i] - c
        r[i] = v
        a = abs(v)
        front[size] = i
        size += a > theta * factor[i]
        total += v
        abs_r += a
        max_r = max(max_r, a)
        zi = z[i]
        abs_z += abs(zi)
        min_z = min(min_z, zi)
    return abs_r, max_r, total, abs_z, min_z, size


def _rows_loop(
    indptr: Any, indices: Any, weights: Any, out_weight: Any, z: Any, sources: Any, factor: float, r: Any
) -> None:
    """``r_v += factor · z_u · w(u → v) / d_u`` over the rows of ``sources`` (dangling rows skipped)."""
    for k in range(sources.shape[0]):
        u = sources[k]
        d = out_weight[u]
        if d == 0.0 or z[u] == 0.0:
            continue
        f = factor * z[u] / d
        for e in range(indptr[u], indptr[u + 1]):
            r[np.uint32(indices[e])] += f * weights[e]  # unsigned: see _level_loop


@dataclass(frozen=True)
class _Kernels:
    level: Callable[..., tuple[int, int, int, float, float]]
    settle: Callable[..., tuple[float, float, float, float, float, int]]
    rows: Callable[[CSRGraph, FloatArray, npt.NDArray[np.int64], float, FloatArray], None]


def _numba_kernels() -> _Kernels:
    jit = numba.njit(cache=True, nogil=True)
    level_jit, rows_jit = jit(_level_loop), jit(_rows_loop)
    # Sums and extrema in any order (vectorised); the values are finite by construction.
    settle_jit = numba.njit(cache=True, nogil=True, fastmath=True)(_settle_loop)

    def level(
        g: CSRGraph,
        scale: Any,
        dangling: Any,
        z: Any,
        r: Any,
        theta: float,
        factor: Any,
        sweeps: int,
        front: Any,
        size: int,
    ) -> tuple[int, int, int, float, float]:
        out = level_jit(
            g.indptr, g.indices, g.weights, scale, dangling, z, r, theta, factor, sweeps, front, size
        )
        return int(out[0]), int(out[1]), int(out[2]), float(out[3]), float(out[4])

    def settle(
        z: FloatArray, r: FloatArray, c: float, theta: float, factor: Any, front: Any
    ) -> tuple[float, float, float, float, float, int]:
        a, b, t, d, e, size = settle_jit(z, r, c, theta, factor, front)
        return float(a), float(b), float(t), float(d), float(e), int(size)

    def rows(g: CSRGraph, z: FloatArray, sources: Any, factor: float, r: FloatArray) -> None:
        if sources.size:
            rows_jit(g.indptr, g.indices, g.weights, g.out_weight, z, sources, factor, r)

    return _Kernels(level, settle, rows)


def _numpy_kernels() -> _Kernels:
    def level(
        g: CSRGraph,
        scale: Any,
        dangling: Any,
        z: Any,
        r: Any,
        theta: float,
        factor: Any,
        sweeps: int,
        front: Any,
        size: int,
    ) -> tuple[int, int, int, float, float]:
        # Jacobi-style: the whole frontier {u : |r_u| > θ f_u} is pushed at once.
        done = pushes = edges = 0
        pushed = pushed_dangling = 0.0
        for _ in range(sweeps):
            front = np.flatnonzero(np.abs(r) > theta * factor)
            if front.size == 0:
                break
            done += 1
            delta = r[front]
            z[front] += delta
            r[front] = 0.0
            edges += _scatter_rows(g, front, delta * scale[front], r)
            pushed += float(delta.sum())
            pushed_dangling += float(delta[dangling[front]].sum())
            pushes += int(front.size)
        return done, pushes, edges, pushed, pushed_dangling

    def settle(
        z: FloatArray, r: FloatArray, c: float, theta: float, factor: Any, front: Any
    ) -> tuple[float, float, float, float, float, int]:
        if c != 0.0:
            r -= c
        a = np.abs(r)  # the level finds its own frontier: size -1
        return float(a.sum()), float(a.max()), float(r.sum()), float(np.abs(z).sum()), float(z.min()), -1

    def rows(g: CSRGraph, z: FloatArray, sources: Any, factor: float, r: FloatArray) -> None:
        if sources.size:
            d = g.out_weight[sources]
            coef = np.divide(factor * z[sources], d, out=np.zeros(sources.shape[0]), where=d != 0.0)
            _scatter_rows(g, sources, coef, r)

    return _Kernels(level, settle, rows)


def _scatter_rows(g: CSRGraph, rows: npt.NDArray[np.int64], coef: FloatArray, r: FloatArray) -> int:
    """``r[v] += coef[i] · w(rows[i] → v)`` for all out-edges of ``rows``; returns the edge count."""
    starts = g.indptr[rows]
    lengths = g.indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return 0
    offsets = np.cumsum(lengths) - lengths
    edge = np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)
    values = np.repeat(coef, lengths) * g.weights[edge]
    if total > r.shape[0] // 8:
        r += np.bincount(g.indices[edge], weights=values, minlength=r.shape[0])
    else:
        np.add.at(r, g.indices[edge], values)
    return total


_KERNEL_CACHE: dict[str, _Kernels] = {}


def _kernels(engine: str) -> _Kernels:
    if engine not in _KERNEL_CACHE:
        _KERNEL_CACHE[engine] = _numba_kernels() if engine == "numba" else _numpy_kernels()
    return _KERNEL_CACHE[engine]


def _resolve_engine(engine: Engine) -> Literal["numba", "numpy"]:
    if engine == "auto":
        return "numba" if HAVE_NUMBA else "numpy"
    if engine == "numba" and not HAVE_NUMBA:
        raise MissingPrerequisite("engine='numba' needs numba: pip install 'wavegraph[graph]'")
    if engine not in ("numba", "numpy"):
        raise ValueError(f"engine must be 'auto', 'numba' or 'numpy', got {engine!r}")
    return engine


def _check_params(damping: float, tol: float) -> None:
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be in [0, 1), got {damping}")
    if not 1e-15 <= tol < 1.0:
        raise ValueError(f"tol must be in [1e-15, 1), got {tol}")


def _as_csr(graph: CSRGraph | GraphState | sp.sparray | sp.spmatrix) -> CSRGraph:
    if isinstance(graph, CSRGraph):
        return graph
    if isinstance(graph, GraphState):
        return graph.snapshot()
    if sp.issparse(graph):
        return CSRGraph.from_scipy(graph)
    raise TypeError(f"expected a CSRGraph, GraphState or scipy sparse matrix, got {type(graph).__name__}")
