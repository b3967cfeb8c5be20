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
  ``{u : |r_u| > θ}`` and pushes it in index order with the current ``r_u`` (Gauss–Seidel: later pushes
  see earlier ones). ``θ`` starts at a tenth of ``max|r|`` (capped at 10× the mean ``|r_u|``) and halves
  after each level (large residuals first, as in Gauss–Southwell), down to the floor below which (2')
  is guaranteed.
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
* When the changed rows hold more than half of the edges, ``r`` is recomputed from ``z`` with one pass
  over the edges instead (cheaper than walking most rows twice); it is also recomputed every
  ``resync_every`` updates, which washes out floating-point drift (of ``r`` and of the sums below).

**What an update costs.** The graph is read through :class:`GraphRows` (``row_start``/``row_end`` into
edge arrays): an immutable :class:`CSRGraph`, or :meth:`GraphState.rows`, the state's live rows that a
batch patches in place in O(changed rows) (no O(E) rebuild); the old rows come with the batch's
:class:`GraphChange`. Nothing of an update is O(E) but the pushes: the changed rows are walked once each
way; ``D`` (the dangling nodes' ``z``), ``‖z‖₁`` (``= Σ z`` while ``z ≥ 0``, which the pushes report) and
the arrays' capacity (new nodes: amortised O(1)) are kept current instead of being recomputed; each push
level is *one* pass over the nodes that recentres ``r``, measures ``‖r‖₁``, ``Σ r``, ``max |r|`` (the
bound and the next ``θ``) and collects the frontier for the ``θ`` the previous pass chose.

Measured on the bench graphs (``wavegraph bench tpl``), the rest is the pushes themselves, and their
number is set by the bound, not by the batch: a 0.01 % batch of the 1 M-edge graph leaves ``‖r‖₁ ≈ 60``
where (2') needs ``≤ tol · (1 − α) ‖z‖₁ ≈ 0.01`` at ``tol = 1e-7``, and taking that residual down
~6000× spreads it over a third of the nodes (~0.25 M pushes). Three variants that looked cheaper were
measured and dropped: degree-scaled thresholds (``|r_u| > θ (d_u + 1)``, as in Andersen–Chung–Lang)
push 35 % fewer edges but more nodes, and a push costs about a cache miss while an edge costs a few
nanoseconds; a solver confined to the touched nodes (no pass over all nodes) cannot recentre, and
without recentring the one-signed residual of a source becoming dangling or of a new node decays only
at rate α — it pushed 2–3× more; finer or coarser schedules (θ step 0.3–0.7, two sweeps per level) did
not beat the one used (``θ`` halves per level, one sweep each).

The push runs in numba kernels when numba is installed (the ``graph`` extra brings it with pecanpy);
otherwise a vectorised numpy frontier (all nodes above ``θ`` pushed at once, Jacobi-style) does the same
job more slowly.

What to expect: the work of an update is one to four passes' worth of edges in pushes (each level
pushes a fraction of the nodes), against ~30 sparse products for the power iteration at ``tol = 1e-7``.
Most of that gain comes from the push solver itself; reusing the previous ``z`` saves the levels that
would take ``r`` from ``1`` down to the size of the batch's perturbation (see ``push_scratch_s`` in
``wavegraph bench tpl``).
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
from wavegraph.processors.graph.state import CSRGraph, EdgeList, GraphChange, GraphRows, GraphState, RowBlock

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
IntArray = npt.NDArray[np.int64]

_MAX_SWEEPS = 100_000
_RESIDUAL_FROM_SCRATCH = 0.5  # changed rows (old + new) above this share of E: recompute r


@dataclass(frozen=True)
class _Schedule:
    """Push thresholds: ``θ₀ = first · max|r|``, then ``θ ← step · θ`` after each level of at most
    ``sweeps`` sweeps, never above ``cap`` times the mean ``|r_u|`` nor below the floor that (2) needs."""

    first: float = 0.1
    step: float = 0.5
    sweeps: int = 1
    cap: float = 10.0


# Tuned on the bench graphs by edges pushed: an update's residual is already small and local, one sweep
# per level suffices; a solve from z = 0 (``start="push"``) does better with three.
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
    """What one :meth:`IncrementalPageRank.update` (or the initial solve) cost and reached: levels (one
    pass over the nodes each, plus its pushes), pushes, edges pushed, and the final error bound."""

    sweeps: int
    pushes: int
    edges_pushed: int
    error_bound: float


class IncrementalPageRank:
    """PageRank kept current under edge insertions, deletions and new nodes (see the module docstring).

    >>> state = GraphState.from_edges(["a", "b"], ["b", "c"])
    >>> pr = IncrementalPageRank(state.rows())
    >>> change = state.add_edges(["c"], ["a"])
    >>> stats = pr.update(state.rows(), change)
    >>> round(float(pr.scores().sum()), 12)
    1.0

    ``graph`` is an immutable :class:`CSRGraph` snapshot or a :class:`GraphRows` view
    (:meth:`GraphState.rows`: live, so :meth:`update` then needs each batch's :class:`GraphChange`).
    ``tol`` bounds the L1 distance of :meth:`scores` to the exact PageRank after every update.
    ``start="power"`` solves the first graph by power iteration, ``"push"`` by pushing from ``z = 0``.
    """

    def __init__(
        self,
        graph: CSRGraph | GraphRows,
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
        self._graph, self._rows = graph, _as_rows(graph)
        self._updates = 0
        n = self._n = self._rows.num_nodes
        size = max(n, 16)
        self._zbuf, self._rbuf = np.zeros(size), np.zeros(size)
        self._rho = 1.0  # the scalar ρ of r = ρ·1 − (I − α Pᵀ) z
        if start == "power":
            csr = _as_csr(graph)
            self._zbuf[:n] = _power_iteration(csr, damping, tol / 8.0) * (n / (1.0 - damping))
            self._rbuf[:n] = _residual(csr, self._zbuf[:n], damping, self._rho)
        elif start == "push":
            self._rbuf[:n] = 1.0
        else:
            raise ValueError(f"start must be 'power' or 'push', got {start!r}")
        self._exact_node_sums()
        self.last_stats = self._solve(_SCRATCH_SCHEDULE if start == "push" else _UPDATE_SCHEDULE)

    def _exact_node_sums(self) -> None:
        """Recompute what the pushes otherwise keep current: ``‖z‖₁``, whether some ``z_u < 0``, and
        ``D`` (Σ z over dangling nodes). O(n)."""
        rows, z = self._rows, self._zbuf[: self._n]
        n = z.shape[0]
        self._sum_z = float(np.abs(z).sum())
        self._negative_z = bool(n) and float(z.min()) < 0.0
        self._dangling_z = float(z[rows.out_weight == 0.0].sum())

    def _grow(self, n: int) -> None:
        """Room for ``n`` nodes (capacity doubles: amortised O(1) per node); new entries of z, r are 0."""
        if n > self._zbuf.shape[0]:
            size = max(n, 2 * self._zbuf.shape[0])
            self._zbuf = _grow(self._zbuf, size, self._n, 0.0)
            self._rbuf = _grow(self._rbuf, size, self._n, 0.0)
        self._n = n

    @property
    def _z(self) -> FloatArray:
        return self._zbuf[: self._n]

    @property
    def _r(self) -> FloatArray:
        return self._rbuf[: self._n]

    @property
    def graph(self) -> CSRGraph | GraphRows:
        """The graph the scores belong to (as passed to the constructor or to the last update)."""
        return self._graph

    @property
    def num_nodes(self) -> int:
        return self._n

    def scores(self) -> FloatArray:
        """PageRank by node index (a new array summing to 1)."""
        z = self._z
        norm = float(np.abs(z).sum())
        if norm == 0.0:
            return np.full(z.shape[0], 1.0 / max(1, z.shape[0]))
        return z / norm

    def copy(self) -> IncrementalPageRank:
        """An independent engine in the same state (the graph object is shared: a snapshot is immutable;
        a live view must then be moved on by one of the two only)."""
        other = object.__new__(IncrementalPageRank)
        other.__dict__.update(self.__dict__)
        other._zbuf, other._rbuf = self._zbuf.copy(), self._rbuf.copy()
        return other

    # -- updates ----------------------------------------------------------------------------------------
    def update(self, graph: CSRGraph | GraphRows, change: GraphChange | npt.ArrayLike) -> UpdateStats:
        """Move to ``graph``, which differs from the current graph only in the out-rows of the changed
        sources and possibly in new nodes appended at the end.

        ``change`` is the batch's :class:`GraphChange` (its ``old_rows``, the changed rows before the
        batch, are required when the current graph is a live :class:`GraphRows` view), or the changed
        sources' indices when the current graph is an immutable :class:`CSRGraph` (the old rows are then
        read from it). Costs O(changed rows) plus the solve (module docstring, "What an update costs")."""
        rows, alpha = _as_rows(graph), self.damping
        n0, n1 = self._n, rows.num_nodes
        if n1 < n0:
            raise ValueError(f"nodes are never removed: the new graph has {n1} < {n0} nodes")
        sources, old = self._old_rows(change, n0, n1)
        self._grow(n1)
        z, r = self._z, self._r
        # Dangling rows add the scalar α D/n (D = Σ z over dangling nodes) to every node; its change is
        # folded into ρ, so the old nodes' r does not move: ρ' = ρ − α (D'/n' − D/n).
        zs = z[sources]
        was, now = old.out_weight == 0.0, rows.out_weight[sources] == 0.0
        dangling_z = self._dangling_z + float(zs[now & ~was].sum()) - float(zs[was & ~now].sum())
        old_uniform = alpha * self._dangling_z / n0 if n0 else 0.0
        new_uniform = alpha * dangling_z / n1 if n1 else 0.0
        self._rho -= new_uniform - old_uniform
        self._dangling_z = dangling_z
        self._graph, self._rows = graph, rows
        self._updates += 1
        row_edges = old.num_edges + int((rows.row_end[sources] - rows.row_start[sources]).sum())
        if row_edges > _RESIDUAL_FROM_SCRATCH * rows.num_edges or (
            self.resync_every and self._updates % self.resync_every == 0
        ):
            # Most rows changed (one sparse product is cheaper than walking them twice), or the periodic
            # exact recomputation that washes out floating-point drift.
            self._rbuf[:n1] = _residual_of(self)
            self._exact_node_sums()
        else:
            # A new node starts with z = 0, so r = ρ' + α D'/n' (plus what its in-edges bring below).
            r[n0:n1] = self._rho + new_uniform
            # Non-dangling rows of the changed sources: −old row, +new row (each scaled by α z_u / d_u).
            k = self._kernels
            k.rows(
                old.indptr[:-1],
                old.indptr[1:],
                old.indices,
                old.weights,
                old.out_weight,
                sources,
                z,
                -alpha,
                r,
            )
            k.rows(
                rows.row_start[sources],
                rows.row_end[sources],
                rows.indices,
                rows.weights,
                rows.out_weight[sources],
                sources,
                z,
                alpha,
                r,
            )
        self.last_stats = self._solve()
        return self.last_stats

    def _old_rows(self, change: GraphChange | npt.ArrayLike, n0: int, n1: int) -> tuple[IntArray, RowBlock]:
        """The changed sources (sorted, unique) and their rows before the batch."""
        if isinstance(change, GraphChange) and change.old_rows is not None:
            if change.num_nodes_before != n0:
                raise ValueError(f"the change starts from {change.num_nodes_before} nodes, not {n0}")
            return change.changed_sources, change.old_rows
        raw = change.changed_sources if isinstance(change, GraphChange) else change
        sources = np.asarray(raw, dtype=np.int64).reshape(-1)
        if sources.size > 1 and not bool(np.all(sources[1:] > sources[:-1])):
            sources = np.unique(sources)  # GraphChange already gives them sorted and unique
        if sources.size and (sources[0] < 0 or sources[-1] >= n1):
            raise ValueError("changed_sources holds indices outside the graph")
        if not isinstance(self._graph, CSRGraph):
            raise ValueError("a live GraphRows view keeps no old rows: pass the batch's GraphChange")
        return sources, _old_block(self._rows, sources, n0)

    def resync(self) -> UpdateStats:
        """Recompute the residual exactly from ``z`` (one O(E) pass) and push it below ``tol`` again."""
        self._rbuf[: self._n] = _residual_of(self)
        self._exact_node_sums()
        self.last_stats = self._solve()
        return self.last_stats

    def _solve(self, schedule: _Schedule | None = None) -> UpdateStats:
        """Push until the bound (2') is ≤ ``tol``, in levels with a falling threshold ``θ``.

        Invariant: ``r = ρ·1 − (I − α Pᵀ) z``. A dangling push's uniform spread ``α δ/n · 1`` and the
        recentring shift ``c·1`` go into ρ instead of into every ``r_v`` (a uniform residual is free).
        A level is one pass over the nodes (recentre, ``‖r‖₁``, ``Σ r``, the largest ``|r_u|``
        and the frontier for its ``θ``, which the previous pass chose) and its pushes; ``‖z‖₁`` and ``D``
        move with the pushes instead of being summed again."""
        rows, alpha, tol, k = self._rows, self.damping, self.tol, self._kernels
        schedule = schedule or _UPDATE_SCHEDULE
        z, r = self._z, self._r
        n = self._n
        if n == 0:
            return UpdateStats(0, 0, 0, 0.0)
        front = np.empty(n, np.int64)
        sweeps = pushes = edges = 0
        theta = math.inf  # the first pass only measures
        total = math.nan  # Σ r: measured by the first pass, then kept current by the pushes
        while True:
            # Recentre (c = mean r) when the result keeps ρ > 0: afterwards Σ r = 0.
            c = total / n if self._sum_z > 0.0 and total == total and total / n < 0.5 * self._rho else 0.0
            self._rho -= c
            abs_r, max_r, total, size = k.scan(r, c, theta, front)
            if not 0.25 <= self._rho <= 4.0:  # keep the scale of z near n/(1 − α): rescale everything
                inv = 1.0 / self._rho
                z *= inv
                r *= inv
                self._sum_z *= inv
                self._dangling_z *= inv
                self._rho = 1.0
                theta, total = math.inf, math.nan
                continue
            if self._negative_z:  # rare: exact ‖z‖₁, and whether z still has a negative entry
                self._sum_z = float(np.abs(z).sum())
                self._negative_z = float(z.min()) < 0.0
            min_z = -1.0 if self._negative_z else 0.0
            bound = _error_bound(abs_r, total, self._sum_z, min_z, alpha, self._rho)
            if bound <= tol:
                return UpdateStats(sweeps, pushes, edges, bound)
            if sweeps >= _MAX_SWEEPS:
                raise WavegraphError(f"PageRank push did not converge in {_MAX_SWEEPS} sweeps")
            if size:
                done_pushes, done_edges, pushed, pushed_dangling, negative = k.push(
                    rows, z, r, front[:size], theta, alpha
                )
                # A push of δ lowers Σ r by (1 − α) δ, or by δ at a dangling node (its spread went to ρ).
                self._rho -= alpha * pushed_dangling / n
                self._dangling_z += pushed_dangling
                self._sum_z += pushed  # exact while z ≥ 0 (then ‖z‖₁ = Σ z)
                self._negative_z = self._negative_z or negative
                total -= (1.0 - alpha) * (pushed - pushed_dangling) + pushed_dangling
                sweeps += 1
                pushes += done_pushes
                edges += done_edges
            # With |r_u| ≤ floor everywhere (and Σ r ≈ 0), ‖r‖₁ ≤ n · floor meets the bound. θ for the
            # next pass: the schedule, from this pass's figures.
            floor = tol * (1.0 - alpha) * self._sum_z / (n * (2.0 if self._negative_z else 1.0)) / 1.01
            theta = schedule.first * max_r if theta == math.inf else theta * schedule.step
            theta = max(min(theta, schedule.cap * abs_r / n), floor)


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


def _old_block(rows: GraphRows, sources: IntArray, n0: int) -> RowBlock:
    """The rows of ``sources`` in ``rows`` (a source ``≥ n0`` is a new node: an empty row)."""
    known = sources < n0
    index = np.where(known, sources, 0)
    starts = rows.row_start[index] if n0 else np.zeros(sources.shape[0], np.int64)
    lengths = np.where(known, rows.row_end[index] - starts, 0) if n0 else starts
    indptr = np.zeros(sources.shape[0] + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    edge = np.repeat(starts - indptr[:-1], lengths) + np.arange(int(indptr[-1]), dtype=np.int64)
    out_weight = np.where(known, rows.out_weight[index], 0.0) if n0 else np.zeros(sources.shape[0])
    return RowBlock(indptr, rows.indices[edge], rows.weights[edge], out_weight)


def _residual_of(pr: IncrementalPageRank) -> FloatArray:
    """The engine's exact residual ``ρ·1 − (I − α Pᵀ) z`` (one pass over the edges, on the rows as they
    are: a live view is not compacted first)."""
    rows, z, alpha = pr._rows, pr._z, pr.damping
    if pr.engine == "numpy" or rows.num_nodes == 0:
        return _residual(_as_csr(pr._graph), z, alpha, pr._rho)
    r = np.zeros(rows.num_nodes)
    nodes = np.arange(rows.num_nodes, dtype=np.int64)
    pr._kernels.rows(
        rows.row_start, rows.row_end, rows.indices, rows.weights, rows.out_weight, nodes, z, alpha, r
    )
    r += pr._rho - z + alpha * float(z[rows.out_weight == 0.0].sum()) / rows.num_nodes
    return r


def _residual(g: CSRGraph, z: FloatArray, alpha: float, rho: float) -> FloatArray:
    """``ρ·1 − (I − α Pᵀ) z`` computed from scratch (one sparse product)."""
    n = g.num_nodes
    if n == 0:
        return np.empty(0, np.float64)
    dangling = g.out_weight == 0.0
    inv_d = np.divide(1.0, g.out_weight, out=np.zeros(n), where=~dangling)
    r = alpha * (g.to_scipy().T @ (z * inv_d))
    r += rho - z + alpha * float(z[dangling].sum()) / n
    return np.asarray(r, dtype=np.float64)


def _grow(a: FloatArray, size: int, used: int, fill: float) -> FloatArray:
    out = np.full(size, fill)
    out[:used] = a[:used]
    return out


# -- kernels ------------------------------------------------------------------------------------------
# Written as plain loops so that numba can compile them; the numpy engine has vectorised equivalents.
def _scan_loop(r: Any, c: float, theta: float, front: Any) -> tuple[float, float, float, int]:
    """``r ← r − c``; returns ``(Σ |r|, max |r|, Σ r, frontier size)`` in one pass and writes the frontier
    ``{u : |r_u| > θ}`` (in index order, branch-free) into ``front``."""
    abs_r = 0.0
    max_r = 0.0
    total = 0.0
    size = 0
    for u in range(r.shape[0]):
        v = r[u] - c
        r[u] = v
        a = abs(v)
        total += v
        abs_r += a
        max_r = max(max_r, a)
        front[size] = u
        size += a > theta
    return abs_r, max_r, total, size


def _push_loop(
    start: Any,
    end: Any,
    indices: Any,
    weights: Any,
    out_weight: Any,
    z: Any,
    r: Any,
    front: Any,
    theta: float,
    alpha: float,
) -> tuple[int, int, float, float, bool]:
    """Push the frontier in order with the current ``r_u`` (Gauss–Seidel: a node pushed later sees the
    pushes before it; one that fell back to ``|r_u| ≤ θ`` meanwhile is skipped). A dangling
    node's spread is left to the caller (it goes into ρ). Returns (pushes, edges scanned, Σ δ pushed,
    Σ δ pushed at dangling nodes, whether some z_u turned negative)."""
    pushes = 0
    edges = 0
    pushed = 0.0
    pushed_dangling = 0.0
    negative = False
    for k in range(front.shape[0]):
        u = front[k]
        ru = r[u]
        if abs(ru) <= theta:
            continue
        pushes += 1
        zu = z[u] + ru
        z[u] = zu
        negative = negative or zu < 0.0
        r[u] = 0.0
        pushed += ru
        d = out_weight[u]
        if d == 0.0:
            pushed_dangling += ru
            continue
        f = alpha * ru / d
        lo = start[u]
        hi = end[u]
        for e in range(lo, hi):
            r[indices[e]] += f * weights[e]
        edges += hi - lo
    return pushes, edges, pushed, pushed_dangling, negative


def _rows_loop(
    start: Any,
    end: Any,
    indices: Any,
    weights: Any,
    out_weight: Any,
    nodes: Any,
    z: Any,
    factor: float,
    r: Any,
) -> None:
    """``r_v += factor · z_u · w(u → v) / d_u`` over row ``i`` of node ``u = nodes[i]``, which is
    ``indices[start[i]:end[i]]`` with out-weight ``out_weight[i]`` (dangling rows skipped)."""
    for i in range(nodes.shape[0]):
        u = nodes[i]
        d = out_weight[i]
        if d == 0.0 or z[u] == 0.0:
            continue
        f = factor * z[u] / d
        for e in range(start[i], end[i]):
            r[indices[e]] += f * weights[e]


@dataclass(frozen=True)
class _Kernels:
    scan: Callable[[FloatArray, float, float, IntArray], tuple[float, float, float, int]]
    push: Callable[..., tuple[int, int, float, float, bool]]
    rows: Callable[..., None]


def _numba_kernels() -> _Kernels:
    jit = numba.njit(cache=True, nogil=True)
    push_jit, rows_jit = jit(_push_loop), jit(_rows_loop)
    # Sums and extrema in any order (vectorised); the values are finite by construction.
    scan_jit = numba.njit(cache=True, nogil=True, fastmath=True)(_scan_loop)

    def scan(r: FloatArray, c: float, theta: float, front: IntArray) -> tuple[float, float, float, int]:
        a, m, t, size = scan_jit(r, c, theta, front)
        return float(a), float(m), float(t), int(size)

    def push(
        g: GraphRows, z: Any, r: Any, front: Any, theta: float, alpha: float
    ) -> tuple[int, int, float, float, bool]:
        out = push_jit(g.row_start, g.row_end, g.indices, g.weights, g.out_weight, z, r, front, theta, alpha)
        return int(out[0]), int(out[1]), float(out[2]), float(out[3]), bool(out[4])

    def rows(*args: Any) -> None:
        if args[5].size:
            rows_jit(*args)

    return _Kernels(scan, push, rows)


def _numpy_kernels() -> _Kernels:
    def scan(r: FloatArray, c: float, theta: float, front: IntArray) -> tuple[float, float, float, int]:
        if c != 0.0:
            r -= c
        a = np.abs(r)
        picked = np.flatnonzero(a > theta)
        front[: picked.shape[0]] = picked
        return float(a.sum()), float(a.max()), float(r.sum()), int(picked.shape[0])

    def push(
        g: GraphRows, z: Any, r: Any, front: Any, theta: float, alpha: float
    ) -> tuple[int, int, float, float, bool]:
        # Jacobi-style: the whole frontier is pushed at once.
        delta = r[front]
        z[front] += delta
        r[front] = 0.0
        d = g.out_weight[front]
        live = d != 0.0
        coef = alpha * delta[live] / d[live]
        edges = _scatter(g.row_start[front[live]], g.row_end[front[live]], g.indices, g.weights, coef, r)
        negative = bool(front.size) and float(z[front].min()) < 0.0
        return int(front.size), edges, float(delta.sum()), float(delta[~live].sum()), negative

    def rows(
        start: Any,
        end: Any,
        indices: Any,
        weights: Any,
        out_weight: Any,
        nodes: Any,
        z: Any,
        factor: float,
        r: Any,
    ) -> None:
        zs = z[nodes]
        live = (out_weight != 0.0) & (zs != 0.0)
        coef = factor * zs[live] / out_weight[live]
        _scatter(start[live], end[live], indices, weights, coef, r)

    return _Kernels(scan, push, rows)


def _scatter(
    starts: IntArray, ends: IntArray, indices: Any, weights: Any, coef: FloatArray, r: FloatArray
) -> int:
    """``r[v] += coef[i] · w(e)`` for the edges ``e`` of row ``i`` (``starts[i]:ends[i]``); returns the
    edge count."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return 0
    offsets = np.cumsum(lengths) - lengths
    edge = np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)
    values = np.repeat(coef, lengths) * weights[edge]
    if total > r.shape[0] // 8:
        r += np.bincount(indices[edge], weights=values, minlength=r.shape[0])
    else:
        np.add.at(r, indices[edge], values)
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


def _as_rows(graph: CSRGraph | GraphRows) -> GraphRows:
    if isinstance(graph, GraphRows):
        return graph
    if isinstance(graph, CSRGraph):
        return graph.rows()
    raise TypeError(f"expected a CSRGraph or GraphRows, got {type(graph).__name__}")


def _as_csr(graph: CSRGraph | GraphRows | GraphState | sp.sparray | sp.spmatrix) -> CSRGraph:
    if isinstance(graph, CSRGraph):
        return graph
    if isinstance(graph, GraphRows):
        return graph.compact()
    if isinstance(graph, GraphState):
        return graph.snapshot()
    if sp.issparse(graph):
        return CSRGraph.from_scipy(graph)
    raise TypeError(f"expected a CSRGraph, GraphState or scipy sparse matrix, got {type(graph).__name__}")
