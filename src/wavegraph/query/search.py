"""The one query API of the read side: ``SearchService.search(tenant, vector | text, k, kind, filters)``.

- **Backend.** ``settings.vector.backend`` picks FAISS or pgvector. FAISS is used only while an index is
  loaded and fresh (:attr:`SearchService.faiss_ready`); before that, during a rebuild, or without an index,
  queries go to pgvector. Every hit says which backend produced it (``Hit.source``).
- **FAISS hits are checked against PostgreSQL** (the source of truth): one query attaches text and
  metadata and drops ids deleted since the index was built. With ``filters`` (a JSON object the row's
  metadata must contain) FAISS returns ``max(k_prime, 4k)`` candidates that PostgreSQL filters; if fewer
  than ``k`` survive while FAISS had more to give, or FAISS holds no row of the tenant at all (a tenant
  newer than the build), that query is answered by pgvector (exact filtering, committed rows).
- **Scores** are cosine similarities (1 - pgvector's cosine distance; FAISS's inner product of unit
  vectors), higher is nearer; hits are sorted best first.
- **Text** is embedded with the :class:`~wavegraph.processors.embed_text.TextEmbedder` in a worker thread
  (``asyncio.to_thread``), one inference at a time (a lock: two concurrent inferences on 2 cores only
  slow each other down).
- **Timing.** ``wavegraph_search_query_ms{backend}`` observes each query's vector search (including the
  PostgreSQL text lookup of FAISS hits, excluding text embedding).
- **Freshness.** :meth:`SearchService.start` (and :meth:`refresh`) compare PostgreSQL's
  :class:`~wavegraph.sinks.pgvector.SourceStamp` (row count, newest ``updated_at``) with the stamp saved in
  ``<index_dir>/source_stamp.json`` when the FAISS index was last built. Missing index, missing stamp or
  any difference → the index is rebuilt from every PostgreSQL row (one repeatable-read snapshot, the
  stamp computed from the rows read), persisted, and the stamp written. Upserts move ``updated_at`` and
  deletes change the count, so any write since the build is seen; writes the index also received make it
  look stale too, which costs a rebuild, never a wrong answer.
- **Freshness of queries (issue 12: searchable within 2 s of being stored).** FAISS is not updated
  incrementally; instead queries **fall back to pgvector while FAISS lags**. At most every
  ``freshness_s`` (default :data:`FRESHNESS_S` = 1 s; 0 = before every query) a query compares
  PostgreSQL's stamp with the stamp the loaded index was built from; on any difference FAISS is marked
  not ready, that query and the next go to pgvector (which reads the committed rows), and a tracked
  background rebuild brings FAISS back. A row is thus answered by vector search at most ``freshness_s``
  after its commit (plus the query), 1 s by default. The stamp costs one ``count(*)`` + ``max(updated_at)``
  over the table (~1 ms at 10,000 rows), paid by at most one query per interval. The lexical half of
  ``/v1/search`` reads ``transcript_segments`` directly and is fresh at commit.
- **Embedder seam.** ``embedder`` is any object with ``embed(texts) -> (n, dim)`` (:class:`Embedder`),
  so an LMDB-cached embedder can be passed later without touching this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from wavegraph import metrics
from wavegraph.settings import Settings
from wavegraph.sinks.faiss import HybridIndex, HybridParams
from wavegraph.sinks.pgvector import MAX_K, PgVectorStore, RowBatch, SourceStamp
from wavegraph.sinks.vectors import check_vector

__all__ = ["Embedder", "Hit", "SearchService", "Source"]

log = logging.getLogger(__name__)

Source = Literal["faiss", "pgvector"]
STAMP_FILE = "source_stamp.json"
FRESHNESS_S = 1.0  # how often a query checks that FAISS still matches PostgreSQL


class Embedder(Protocol):
    """Unit-norm text embeddings: ``embed(texts)`` -> float32 ``(len(texts), dim)``."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked result: ``score`` is the cosine similarity to the query (higher is nearer)."""

    id: str
    kind: str
    score: float
    source: Source
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class SearchService:
    """Nearest-k search over a tenant's embeddings through FAISS or pgvector (see the module doc).

    ``store`` must be open; ``index`` is the FAISS index (``HybridIndex.open(settings.vector.index_dir)``,
    loaded or empty), ``None`` for pgvector only; ``embedder`` is needed for text queries only.
    :meth:`open` builds all that from the settings. Call :meth:`start` once (it makes the FAISS index
    fresh), :meth:`close` on shutdown.
    """

    def __init__(
        self,
        settings: Settings,
        store: PgVectorStore,
        index: HybridIndex | None = None,
        embedder: Embedder | None = None,
        *,
        freshness_s: float = FRESHNESS_S,
    ) -> None:
        if freshness_s < 0:
            raise ValueError(f"freshness_s must be >= 0, got {freshness_s}")
        self.settings = settings
        self.freshness_s = freshness_s
        self._built: SourceStamp | None = None  # what the loaded FAISS index was built from
        self._checked_at = 0.0  # time.monotonic() of the last freshness check
        self.store = store
        self.index = index
        self.embedder = embedder
        self.dim = settings.vector.dim
        self._owns_index = False
        self._faiss_ready = False
        self._embed_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self._task: asyncio.Task[bool] | None = None
        self._building: asyncio.Future[int] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        settings: Settings,
        store: PgVectorStore,
        embedder: Embedder | None = None,
        *,
        freshness_s: float = FRESHNESS_S,
    ) -> SearchService:
        """A service on ``store`` with the FAISS index of ``settings.vector.index_dir`` (loaded, or empty
        until :meth:`start` rebuilds it) when ``settings.vector.backend`` is ``"faiss"``, else pgvector
        only. :meth:`close` closes that index."""
        index = None
        if settings.vector.backend == "faiss":
            params = HybridParams.from_settings(settings.vector)
            index = await asyncio.to_thread(HybridIndex.open, Path(settings.vector.index_dir), params)
        service = cls(settings, store, index, embedder, freshness_s=freshness_s)
        service._owns_index = index is not None
        return service

    @property
    def faiss_ready(self) -> bool:
        """True when FAISS answers queries: an index is present, built and not being rebuilt."""
        return self.index is not None and self._faiss_ready

    @property
    def backend(self) -> Source:
        """The backend the next query without filters goes to."""
        return "faiss" if self.settings.vector.backend == "faiss" and self.faiss_ready else "pgvector"

    async def start(self, *, wait: bool = True) -> None:
        """Make the FAISS index fresh (see :meth:`refresh`). With ``wait=False`` the rebuild runs in a
        tracked background task and queries use pgvector until it is done; :meth:`close` cancels it."""
        if self.index is None:
            return
        if wait:
            await self.refresh()
        elif self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled() and self._task.exception() is not None:
                log.error("FAISS index refresh failed; retrying", exc_info=self._task.exception())
            self._task = asyncio.create_task(self.refresh(), name="wavegraph-faiss-refresh")

    async def wait_ready(self) -> bool:
        """Wait for a background :meth:`start` to finish; returns :attr:`faiss_ready` (its error, if it
        failed, is raised here)."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self.faiss_ready

    async def close(self) -> None:
        """Cancel a background rebuild and close an index :meth:`open` opened. Safe twice.

        A FAISS rebuild already running in its thread cannot be interrupted: it gets
        ``runtime.shutdown_timeout_s`` to finish; past that the index is left open (the process is
        exiting; the saved generation on disk stays consistent)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif task is not None and not task.cancelled() and task.exception() is not None:
            log.error("FAISS index refresh failed", exc_info=task.exception())
        self._faiss_ready = False
        building, self._building = self._building, None
        if building is not None and not building.done():
            await asyncio.wait({building}, timeout=self.settings.runtime.shutdown_timeout_s)
            if not building.done():
                log.warning("FAISS rebuild still running at shutdown; index left open")
                return
        if building is not None and not building.cancelled() and building.exception() is not None:
            log.error("FAISS index rebuild failed", exc_info=building.exception())
        if self._owns_index and self.index is not None:
            self._owns_index = False
            await asyncio.to_thread(self.index.close)

    async def refresh(self, *, force: bool = False) -> bool:
        """Rebuild the FAISS index from PostgreSQL when it is missing or stale (or ``force``); returns
        whether it rebuilt. Queries use pgvector while it rebuilds."""
        if self.index is None:
            return False
        async with self._refresh_lock:
            current = await self.store.stamp()
            saved = self._read_stamp()
            if not force and saved == current and len(self.index) == current.count:
                self._built = current
                self._checked_at = time.monotonic()
                self._faiss_ready = True
                return False
            self._faiss_ready = False
            stamp = await self._rebuild()
            self._write_stamp(stamp)
            self._built = stamp
            self._checked_at = time.monotonic()
            self._faiss_ready = True
            log.info("FAISS index rebuilt from PostgreSQL: %d rows", stamp.count)
            return True

    async def _rebuild(self) -> SourceStamp:
        assert self.index is not None
        batches = [b async for b in self.store.iter_batches()]
        count = sum(len(b.ids) for b in batches)
        stamps = [b.max_updated_at for b in batches if b.max_updated_at is not None]
        # Shielded: cancelling the refresh must not orphan the thread; close() waits for it.
        self._building = asyncio.ensure_future(asyncio.to_thread(self.index.rebuild, _shuffled(batches)))
        await asyncio.shield(self._building)
        return SourceStamp(count, max(stamps) if stamps else None)

    @property
    def _stamp_path(self) -> Path:
        assert self.index is not None
        return self.index.directory / STAMP_FILE

    def _read_stamp(self) -> SourceStamp | None:
        try:
            return SourceStamp.from_json(json.loads(self._stamp_path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_stamp(self, stamp: SourceStamp) -> None:
        tmp = self._stamp_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stamp.to_json()))
        tmp.replace(self._stamp_path)

    # --- queries ------------------------------------------------------------------------------
    async def embed(self, text: str) -> np.ndarray:
        """The unit vector of ``text`` (one inference at a time, in a worker thread)."""
        if self.embedder is None:
            raise RuntimeError("text search needs an embedder: SearchService(..., embedder=TextEmbedder())")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        embedder = self.embedder
        async with self._embed_lock:
            out = await asyncio.to_thread(embedder.embed, [text])
        return check_vector(out[0], self.dim, "embedding of the query text")

    async def search(
        self,
        tenant: str,
        vector: Any = None,
        text: str | None = None,
        k: int = 10,
        kind: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The ``k`` hits of ``tenant`` nearest to ``vector`` or to the embedding of ``text``, best first.

        Raises :class:`~wavegraph.sinks.vectors.InvalidVector` for a bad vector (wrong dimension, NaN,
        infinite or zero) and ``ValueError`` for other bad arguments.
        """
        if (vector is None) == (text is None):
            raise ValueError("give exactly one of vector or text")
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
        if filters is not None and not isinstance(filters, Mapping):
            raise ValueError("filters must be a JSON object (mapping)")
        vec = check_vector(vector, self.dim) if text is None else await self.embed(text)
        await self._check_fresh()
        if self.backend == "faiss":
            started = time.perf_counter()
            hits = await self._search_faiss(tenant, vec, k, kind, filters)
            if hits is not None:
                metrics.SEARCH_QUERY_MS.labels("faiss").observe((time.perf_counter() - started) * 1000)
                return hits
        started = time.perf_counter()
        hits = await self._search_pgvector(tenant, vec, k, kind, filters)
        metrics.SEARCH_QUERY_MS.labels("pgvector").observe((time.perf_counter() - started) * 1000)
        return hits

    async def _check_fresh(self) -> None:
        """Every ``freshness_s``: if PostgreSQL moved past the index's stamp, answer from pgvector and
        rebuild FAISS in the background (see the module doc)."""
        if not self.faiss_ready or time.monotonic() - self._checked_at < self.freshness_s:
            return
        self._checked_at = time.monotonic()
        current = await self.store.stamp()
        if current != self._built and self.faiss_ready:
            log.info(
                "FAISS lags PostgreSQL (%s, built from %s): pgvector answers until rebuilt",
                current,
                self._built,
            )
            self._faiss_ready = False
            await self.start(wait=False)

    async def _search_pgvector(
        self, tenant: str, vec: np.ndarray, k: int, kind: str | None, filters: Mapping[str, Any] | None
    ) -> list[Hit]:
        found = await self.store.nearest(tenant, vec, k, kind=kind, filters=filters)
        return [Hit(h.id, h.kind, 1.0 - h.distance, "pgvector", h.text, h.metadata) for h in found]

    async def _search_faiss(
        self, tenant: str, vec: np.ndarray, k: int, kind: str | None, filters: Mapping[str, Any] | None
    ) -> list[Hit] | None:
        """FAISS hits that PostgreSQL still holds (and that match ``filters``), or None to fall back."""
        index = self.index
        assert index is not None
        want = max(self.settings.vector.k_prime, 4 * k) if filters else k
        raw = await asyncio.to_thread(index.search, tenant, vec, want, kind)
        rows = await self.store.fetch(tenant, [(h.kind, h.id) for h in raw], filters=filters)
        hits = [
            Hit(h.id, h.kind, h.score, "faiss", *rows[(h.kind, h.id)]) for h in raw if (h.kind, h.id) in rows
        ][:k]
        if not raw or (len(hits) < k and len(raw) >= want):
            # FAISS knows no row of this tenant (maybe newer than the build), or rows were filtered or
            # deleted away while FAISS had more candidates: pgvector is exact and reads what is committed.
            return None
        return hits


def _shuffled(batches: list[RowBatch], seed: int = 0) -> Iterator[tuple[str, str, str, np.ndarray]]:
    """Every row of ``batches`` in a seeded random order: the FAISS rebuild trains its quantizer on the
    first rows, which in table order could all be one tenant's or one kind's."""
    sizes = np.array([len(b.ids) for b in batches], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])) if len(sizes) else sizes
    order = np.random.default_rng(seed).permutation(int(sizes.sum()))
    owner = np.searchsorted(starts, order, side="right") - 1
    for b, i in zip(owner.tolist(), (order - starts[owner]).tolist(), strict=True):
        batch = batches[b]
        yield batch.tenants[i], batch.kinds[i], batch.ids[i], batch.vectors[i]
