"""One tenant's graph in the graph job: typed edges, the CSR state, PageRank and what was published.

PageRank is kept current per batch by :class:`IncrementalPageRank` (L1 error ≤ ``graph.pagerank_tol``).
Which nodes get a ``wavegraph.nodes.v1`` event after a batch (:meth:`TenantGraph.due_events`):

- every node never published yet (a new node), then
- the nodes whose score moved most since their last published value, largest first, until the
  published vector is within ``publish_l1`` (L1) of the current scores,
- at most ``cap`` nodes per batch; the rest keep their old published value and are picked up by the
  next batch (nothing is lost, only delayed).

A node's published value only changes in :meth:`mark_published`, after the broker acknowledged its
event; a failed send is therefore retried by the next attempt without any extra bookkeeping.

PageRank never stops the job: when an incremental update raises or yields a non-finite score (neither
happens for the weights :class:`~wavegraph.processors.graph_job.guard.GraphGuard` admits; it is the safety
net), the tenant's PageRank is solved again from scratch by power iteration, which always terminates,
and :attr:`TenantGraph.pagerank_resets` counts it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from wavegraph.errors import WavegraphError
from wavegraph.events import EdgeLike
from wavegraph.processors.graph.pagerank import IncrementalPageRank
from wavegraph.processors.graph.state import GraphChange, GraphState
from wavegraph.processors.graph_job.edge_table import EdgeTable

__all__ = ["TenantGraph"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


class TenantGraph:
    """Graph, PageRank, change counter and embedding version of one tenant."""

    def __init__(self, tenant: str, *, damping: float, tol: float, version: int = 0) -> None:
        self.tenant = tenant
        self.damping = damping
        self.tol = tol
        self.edges = EdgeTable()
        self.state = GraphState()
        self.version = version  # the latest embedding version stored for this tenant
        self.changed_edges = 0  # pairs added/re-weighted/removed + nodes added since the last recompute
        self.stale = False  # recompute whatever changed (set after a rebuild: the stored version is older)
        self.pagerank_resets = 0  # incremental updates replaced by a full solve (see the module docstring)
        self._pagerank: IncrementalPageRank | None = None
        self._published: FloatArray = np.empty(0)  # NaN: never published

    # -- edges and PageRank -------------------------------------------------------------------------
    def apply(self, events: Iterable[EdgeLike]) -> GraphChange | None:
        """Apply edge events to the graph (not to PageRank); ``None`` when the graph did not change.

        Counts the pairs added, re-weighted or removed and the nodes added as changes."""
        pairs = self.edges.apply(events)
        n0 = self.state.num_nodes
        self.state.add_nodes(pairs.nodes)
        if not pairs and self.state.num_nodes == n0:
            return None
        change = self.state.apply(
            add=(pairs.src, pairs.dst, pairs.weight) if pairs.src else None,
            remove=(pairs.removed_src, pairs.removed_dst) if pairs.removed_src else None,
        )
        new_nodes = self.state.num_nodes - n0
        self.changed_edges += change.added + change.updated + change.removed + new_nodes
        return GraphChange(
            change.changed_sources, n0, self.state.num_nodes, change.added, change.updated, change.removed
        )

    def update_pagerank(self, change: GraphChange) -> None:
        """Bring PageRank to the current graph after :meth:`apply` returned ``change`` (falls back to a
        full solve, see the module docstring)."""
        snapshot = self.state.snapshot()
        if self._pagerank is None:
            if snapshot.num_nodes:
                self._pagerank = IncrementalPageRank(snapshot, damping=self.damping, tol=self.tol)
            return
        try:
            self._pagerank.update(snapshot, change.changed_sources)
            problem = None if np.isfinite(self._pagerank.scores()).all() else "non-finite scores"
        except (ArithmeticError, ValueError, WavegraphError) as exc:
            problem = repr(exc)
        if problem is not None:
            log.error("graph: %s: incremental PageRank failed (%s); solving it again", self.tenant, problem)
            self.pagerank_resets += 1
            self._pagerank = IncrementalPageRank(snapshot, damping=self.damping, tol=self.tol)

    def start_pagerank(self, *, published: bool) -> None:
        """Solve PageRank for the whole current graph (after a rebuild). With ``published`` the scores
        count as already published; without it every node is due again (what the graph job does after
        a restart: it cannot know what it published before)."""
        snapshot = self.state.snapshot()
        self._pagerank = (
            IncrementalPageRank(snapshot, damping=self.damping, tol=self.tol) if snapshot.num_nodes else None
        )
        self._published = self.scores().copy() if published else np.empty(0)

    def scores(self) -> FloatArray:
        """PageRank by node index (sums to 1; empty before the first node)."""
        if self._pagerank is None:
            return np.zeros(self.state.num_nodes)
        return np.asarray(self._pagerank.scores(), dtype=np.float64)

    # -- publishing ---------------------------------------------------------------------------------
    def due_events(self, publish_l1: float, cap: int) -> tuple[IndexArray, FloatArray]:
        """Node indices to publish and their scores (see the module docstring)."""
        x = self.scores()
        n = x.shape[0]
        if self._published.shape[0] < n:
            grow = np.full(n - self._published.shape[0], np.nan)
            self._published = np.concatenate([self._published, grow])
        p = self._published[:n]
        never = np.isnan(p)
        delta = np.abs(x - np.where(never, 0.0, p))
        fresh = np.flatnonzero(never)
        moved = np.flatnonzero(~never & (delta > 0.0))
        order = moved[np.argsort(-delta[moved], kind="stable")]
        tail = float(delta[order].sum())
        take = 0
        if tail > publish_l1:
            remaining = tail - np.cumsum(delta[order])  # unpublished drift after taking i + 1 nodes
            take = int(np.argmax(remaining <= publish_l1)) + 1 if bool(np.any(remaining <= publish_l1)) else n
        chosen = np.concatenate([fresh, order[:take]])[:cap].astype(np.int64)
        return chosen, np.maximum(x[chosen], 0.0)

    def mark_published(self, nodes: IndexArray, values: FloatArray) -> None:
        """Record that the broker acknowledged ``values`` for ``nodes`` (indices from :meth:`due_events`),
        or, in exactly-once mode, that they wait in the next transaction."""
        self._published[nodes] = values

    def forget_published(self, nodes: IndexArray) -> None:
        """``nodes``' last events never became visible (their transaction aborted): due again."""
        self._published[nodes] = np.nan

    def restore_published(self, values: Mapping[str, float]) -> None:
        """After a load: the nodes' latest events on the topic are ``values`` (node id → score); the
        other nodes count as never published."""
        n = self.state.num_nodes
        self._published = np.full(n, np.nan)
        ids = self.state.node_ids
        for i in range(n):
            v = values.get(ids[i])
            if v is not None:
                self._published[i] = v

    # -- embeddings ---------------------------------------------------------------------------------
    def recompute_due(self, fraction: float) -> bool:
        """More than ``fraction`` of the (current) edges changed since the last recompute began, or
        :attr:`stale`; never for an empty graph."""
        if self.state.num_nodes == 0:
            return False
        return self.stale or self.changed_edges > fraction * max(1, self.state.num_edges)
