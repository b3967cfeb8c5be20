"""Embedding recomputes of the graph job as tracked background tasks.

At most one task per tenant. A task loops while its tenant's recompute is due: it takes a snapshot of
the graph and the PageRank scores (in the event loop, so they are consistent), computes the embeddings
and HAA in a worker thread (``asyncio.to_thread``: the consumer loop keeps running), then stores them
(:class:`~wavegraph.sinks.node_embeddings.EmbeddingStore`). Edges that change meanwhile count towards
the next recompute, which the same task starts when it is due.

Versions: each recompute takes the next version of its tenant (the newest stored one at start + 1,
then + 1 per recompute); NodeEvents carry a tenant's latest *stored* version.

Failures never end the job, and never stop the other tenants' recomputes:

- the computation raises (``compute_embeddings`` on this graph) → logged as an error and counted
  (``recompute_errors``); the changes are *not* given back, so the same graph is not computed again:
  the tenant's next recompute starts when new changes make it due;
- the store cannot be written (a database down, a missing table; see
  :class:`~wavegraph.sinks.node_embeddings.EmbeddingStore`) → logged and counted
  (``recompute_failures``); the changes are given back and the task retries after ``retry_after_s``,
  doubling per consecutive failure up to ``MAX_BACKOFF`` × ``retry_after_s`` (with the graph as it is
  then), until it succeeds or the job shuts down;
- the store refuses single rows → they are skipped and counted (``rows_refused``); the recompute
  counts as stored;
- anything else in the task (a bug) → logged with its traceback and counted (``recompute_errors``);
  the task ends and the next flush starts a new one if the tenant is still due.

Scores are stored clamped to ``[0, ∞)`` and finite (the ``pagerank >= 0`` CHECK of ``node_embeddings``;
an incremental solve may leave a score at ``-1e-18``).

Shutdown (:meth:`Recomputer.aclose`): no new recompute starts; the running ones get ``grace_s``
seconds to finish, then they are cancelled and awaited, each with its worker thread (which stops at
its next stage boundary). Nothing is left pending; what was cancelled is recomputed after the restart
(the rebuilt graph is marked stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from wavegraph.processors.graph.state import CSRGraph
from wavegraph.processors.graph_job.embed import (
    EmbeddingParams,
    NodeEmbeddings,
    RecomputeCancelled,
    compute_embeddings,
)
from wavegraph.processors.graph_job.progress import JobProgress, NoProgress
from wavegraph.processors.graph_job.tenant import TenantGraph
from wavegraph.sinks.node_embeddings import EmbeddingStore, NodeRows

__all__ = ["MAX_BACKOFF", "Recomputer"]

log = logging.getLogger(__name__)

MAX_BACKOFF = 60  # the longest wait between store retries, in units of ``retry_after_s``


class Recomputer:
    """Runs the recomputes of every tenant (see the module docstring)."""

    def __init__(
        self,
        store: EmbeddingStore,
        params: EmbeddingParams,
        *,
        fraction: float,
        progress: JobProgress | None = None,
        retry_after_s: float = 5.0,
    ) -> None:
        self.store = store
        self.params = params
        self.fraction = fraction
        self.progress = progress or NoProgress()
        self.retry_after_s = retry_after_s
        self.versions: dict[str, int] = {}  # the latest version allocated per tenant
        self.stats = {
            "recomputes": 0,
            "recompute_failures": 0,
            "recompute_errors": 0,
            "recomputes_cancelled": 0,
            "rows_refused": 0,
        }
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel = threading.Event()
        self._closing = False
        self._closed = asyncio.Event()

    async def load_versions(self) -> None:
        """Continue each tenant's version numbers after the newest stored one (or the newest this
        process handed out, when that is higher: a recompute may be storing it right now)."""
        stored = await self.store.latest_versions()
        for tenant, version in stored.items():
            self.versions[tenant] = max(version, self.versions.get(tenant, 0))

    def running(self) -> list[asyncio.Task[None]]:
        return [t for t in self._tasks.values() if not t.done()]

    def schedule(self, graphs: dict[str, TenantGraph]) -> None:
        """Start a recompute task for every tenant that is due and has none running."""
        if self._closing:
            return
        for tenant, graph in graphs.items():
            task = self._tasks.get(tenant)
            if task is not None and not task.done():
                continue
            if not graph.recompute_due(self.fraction):
                continue
            task = asyncio.create_task(self._loop(graph), name=f"wavegraph-graph-recompute-{tenant}")
            self._tasks[tenant] = task
            task.add_done_callback(functools.partial(self._forget, tenant))

    def _forget(self, tenant: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(tenant) is task:
            del self._tasks[tenant]

    async def _loop(self, graph: TenantGraph) -> None:
        failures = 0
        try:
            while not self._closing and graph.recompute_due(self.fraction):
                if await self._recompute(graph):
                    failures = 0
                    continue
                failures += 1
                wait = self.retry_after_s * min(2 ** (failures - 1), MAX_BACKOFF)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), wait)
        except Exception:
            log.exception("graph: the recompute task of %s failed", graph.tenant)
            self.stats["recompute_errors"] += 1

    async def _recompute(self, graph: TenantGraph) -> bool:
        """One recompute of ``graph``; ``False`` when the store could not be written or the recompute
        was cancelled (the loop waits, then retries unless the job is closing)."""
        snapshot = graph.state.snapshot()
        n = snapshot.num_nodes
        node_ids = list(graph.state.node_ids[:n])
        scores = np.zeros(n)
        current = graph.scores()[:n]
        scores[: current.shape[0]] = current
        scores = np.where(np.isfinite(scores), np.maximum(scores, 0.0), 0.0)
        taken, stale = graph.changed_edges, graph.stale
        graph.changed_edges, graph.stale = 0, False
        version = self.versions.get(graph.tenant, 0) + 1
        self.versions[graph.tenant] = version
        label = f"{graph.tenant}: embeddings v{version} of {n} nodes"
        task = self.progress.task(label, total=2 * n)
        started = time.perf_counter()
        try:
            try:
                embeddings = await self._in_thread(
                    snapshot, node_ids, lambda stage: task.describe(f"{label}: {stage}")
                )
            except RecomputeCancelled:  # shutdown: the loop ends (recomputed after the restart)
                self._give_back(graph, taken, stale)
                return False
            except Exception as exc:
                log.error(
                    "graph: embeddings v%d of %s could not be computed (%r); skipped until the graph changes",
                    version,
                    graph.tenant,
                    exc,
                    exc_info=True,
                )
                self.stats["recompute_errors"] += 1
                return True
            task.describe(f"{label}: storing")
            rows = NodeRows(graph.tenant, version, node_ids, scores, embeddings.points, embeddings.haa)
            refused = await self.store.write(rows, task.advance)
        except asyncio.CancelledError:
            self._give_back(graph, taken, stale)
            self.stats["recomputes_cancelled"] += 1
            raise
        except Exception as exc:
            log.warning(
                "graph: storing v%d of %s failed (%r); retrying later",
                version,
                graph.tenant,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            self._give_back(graph, taken, stale)
            self.stats["recompute_failures"] += 1
            return False
        finally:
            task.close()
        graph.version = max(graph.version, version)
        self.stats["recomputes"] += 1
        self.stats["rows_refused"] += refused
        log.info(
            "graph: %s embeddings v%d stored (%d nodes, %d refused, %.2fs)",
            graph.tenant,
            version,
            n,
            refused,
            time.perf_counter() - started,
        )
        return True

    async def _in_thread(
        self, snapshot: CSRGraph, node_ids: list[str], stage: Callable[[str], None]
    ) -> NodeEmbeddings:
        """:func:`compute_embeddings` in a worker thread. When cancelled, the thread is told to stop and
        awaited (it stops at its next stage boundary), so no thread outlives the task."""
        work = asyncio.ensure_future(
            asyncio.to_thread(
                compute_embeddings, snapshot, self.params, self._cancel, stage, node_ids=node_ids
            )
        )
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            self._cancel.set()
            await asyncio.wait([work])
            if not work.cancelled():
                work.exception()  # retrieved: RecomputeCancelled (or the result) is expected here
            raise

    @staticmethod
    def _give_back(graph: TenantGraph, taken: int, stale: bool) -> None:
        graph.changed_edges += taken
        graph.stale = graph.stale or stale

    async def aclose(self, grace_s: float) -> None:
        """Start nothing new; wait up to ``grace_s`` for running recomputes, cancel the rest, await all.
        Safe to call twice."""
        self._closing = True
        self._closed.set()
        pending = self.running()
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            if late:
                self._cancel.set()
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        self._tasks.clear()
