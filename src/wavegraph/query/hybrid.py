"""Hybrid search of ``/v1/search``: full-text ⊕ vectors, fused by reciprocal rank fusion.

:meth:`HybridSearch.search` answers ``(tenant, text | vector, kind, mode, k, filters)`` with ranked
:class:`SearchHit` s. The tenant is always the API key's.

**Transcripts** (``kind="transcript"``, the default) are answered at **segment** level (which stream,
window, time range, and what was said):

- *lexical*: PostgreSQL full-text over ``transcript_segments.search_tsv``
  (:func:`wavegraph.query.lexical.search_segments`: any query word, IDF-weighted, phrase bonus). Finds
  exact names, codes and rare words the embedding blurs.
- *semantic*: the query's MiniLM vector → :class:`~wavegraph.query.search.SearchService` (FAISS while it
  is fresh, pgvector otherwise: see its freshness rules) over the windows (``embeddings``,
  ``kind='transcript'``), ``max(2·depth, 20)`` candidate windows; then every segment of those windows is
  scored exactly by cosine to the query (its own stored embedding) and the best ``depth`` kept. Finds
  paraphrases that share no word with the query. ``source`` is the backend that found the window.
- *hybrid* (default): both lists, each ``max(k, CANDIDATES)`` deep, fused by RRF (k = 60); a segment
  found by both ranks above one found by either alone. ``score`` is the RRF score, ``source`` the list
  that ranked it best, ``sources`` all that found it. A ``vector`` query has no words: hybrid is then
  the semantic list alone.

**Nodes** (``kind="node"``): a node has no text, only its id and a graph embedding, so

- *lexical*: the id's words (:func:`wavegraph.query.lexical.search_nodes`, ``user:ada_lovelace`` ←
  ``lovelace``);
- *semantic*: a ``vector`` of ``graph.embedding_dim`` → nearest nodes by L2 (:mod:`wavegraph.query.nodes`);
  a text query is anchored on the best lexical match and returns the nodes nearest to its embedding
  ("nodes like the one you named"), nothing when no id matches;
- *hybrid*: RRF of the two.

``filters`` (transcripts only): ``{"stream_id": str, "window": int}``, applied to both lists. Bad
arguments raise ``ValueError`` (or :class:`~wavegraph.sinks.vectors.InvalidVector`, a ``ValueError``
too), which the HTTP layer answers with 422; store failures propagate (503 there).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import asyncpg
import numpy as np

from wavegraph.query import lexical, nodes
from wavegraph.query.fusion import reciprocal_rank_fusion
from wavegraph.query.search import SearchService
from wavegraph.settings import Settings
from wavegraph.sinks.vectors import check_vector

__all__ = ["CANDIDATES", "HybridSearch", "Kind", "Mode", "SearchHit", "SearchResult"]

Mode = Literal["hybrid", "semantic", "lexical"]
Kind = Literal["transcript", "node"]
HitSource = Literal["faiss", "pgvector", "lexical"]
MODES: tuple[str, ...] = get_args(Mode)
KINDS: tuple[str, ...] = get_args(Kind)
CANDIDATES = 20  # depth of each list before fusion (at least k)
FILTER_KEYS = {"stream_id": str, "window": int}
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_SEGMENTS_OF_WINDOWS = """
SELECT s.stream_id, s.window_index, s.segment, s.start_s, s.end_s, s.text,
       1 - (s.embedding <=> $2) AS score
FROM transcript_segments s
JOIN unnest($3::text[], $4::int[]) AS w(stream_id, window_index)
  ON s.stream_id = w.stream_id AND s.window_index = w.window_index
WHERE s.tenant = $1 AND s.embedding IS NOT NULL
"""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One answer. Transcripts fill ``stream_id``, ``window``, ``start_s``, ``end_s``, ``text``; nodes
    fill ``node`` and ``pagerank``."""

    id: str
    kind: Kind
    score: float
    source: HitSource
    sources: tuple[HitSource, ...] = ()
    stream_id: str | None = None
    window: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    text: str | None = None
    node: str | None = None
    pagerank: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "score": self.score,
            "source": self.source,
            "sources": list(self.sources or (self.source,)),
        }
        if self.kind == "transcript":
            out.update(
                stream_id=self.stream_id,
                window=self.window,
                start_s=self.start_s,
                end_s=self.end_s,
                text=self.text,
            )
        else:
            out.update(node=self.node, pagerank=self.pagerank)
        return out


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[SearchHit]
    mode: Mode
    kind: Kind
    embed_ms: float = 0.0
    """Time spent embedding the query text (0 for a vector query)."""
    lists: dict[str, int] = field(default_factory=dict)
    """How many candidates each list gave before fusion."""


class HybridSearch:
    """Hybrid search over one PostgreSQL pool (the pgvector codec registered) and a vector service.

    ``vectors`` must have an embedder for text queries; ``vectors.store`` must use the same database.
    """

    def __init__(self, settings: Settings, pool: asyncpg.Pool, vectors: SearchService) -> None:
        self.settings = settings
        self.pool = pool
        self.vectors = vectors

    async def search(
        self,
        tenant: str,
        *,
        text: str | None = None,
        vector: Any = None,
        kind: str = "transcript",
        mode: str = "hybrid",
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
    ) -> SearchResult:
        """The ``k`` best hits of ``tenant`` (see the module doc), best first."""
        if (text is None) == (vector is None):
            raise ValueError("give exactly one of q (text) or vector")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError("q must be a non-empty string")
        if text is not None and "\x00" in text:
            raise ValueError("q contains a NUL character (U+0000), which no stored text can hold")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        max_k = self.settings.read.max_k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
            raise ValueError(f"k must be an integer in 1..{max_k}, got {k!r}")
        if mode == "lexical" and text is None:
            raise ValueError("lexical mode needs q (text): a vector has no words")
        checked = _check_filters(filters, kind)
        if kind == "node":
            return await self._nodes(tenant, text, vector, mode, k)  # type: ignore[arg-type]
        return await self._transcripts(tenant, text, vector, mode, k, checked)  # type: ignore[arg-type]

    # --- transcripts --------------------------------------------------------------------------
    async def _transcripts(
        self, tenant: str, text: str | None, vector: Any, mode: Mode, k: int, filters: dict[str, Any]
    ) -> SearchResult:
        depth = k if mode != "hybrid" else max(k, CANDIDATES)
        lex: list[SearchHit] = []
        sem: list[SearchHit] = []
        embed_ms = 0.0
        if mode in ("semantic", "hybrid"):
            if text is not None:
                started = time.perf_counter()
                vec = await self.vectors.embed(text)
                embed_ms = (time.perf_counter() - started) * 1000.0
            else:
                vec = check_vector(vector, self.settings.vector.dim)
            sem = await self._semantic_segments(tenant, vec, depth, filters)
        if mode in ("lexical", "hybrid") and text is not None:
            found = await lexical.search_segments(
                self.pool,
                tenant,
                text,
                depth,
                stream_id=filters.get("stream_id"),
                window=filters.get("window"),
            )
            lex = [_segment_hit(s, "lexical") for s in found]
        return SearchResult(_combine(mode, lex, sem, k), mode, "transcript", embed_ms, _counts(lex, sem))

    async def _semantic_segments(
        self, tenant: str, vec: np.ndarray, depth: int, filters: dict[str, Any]
    ) -> list[SearchHit]:
        windows = await self.vectors.search(
            tenant, vec, k=min(max(2 * depth, 20), 1000), kind="transcript", filters=filters or None
        )
        keyed: dict[tuple[str, int], HitSource] = {}
        for w in windows:
            stream, window = w.metadata.get("stream_id"), w.metadata.get("window")
            if isinstance(stream, str) and isinstance(window, int):
                keyed.setdefault((stream, window), w.source)
        if not keyed:
            return []
        rows = await self.pool.fetch(
            _SEGMENTS_OF_WINDOWS, tenant, vec, [s for s, _ in keyed], [w for _, w in keyed]
        )
        segments = [lexical.LexicalSegment.from_row(r) for r in rows]
        hits = [_segment_hit(s, keyed[(s.stream_id, s.window)]) for s in segments]
        hits.sort(key=lambda h: (-h.score, h.id))
        return hits[:depth]

    # --- nodes --------------------------------------------------------------------------------
    async def _nodes(self, tenant: str, text: str | None, vector: Any, mode: Mode, k: int) -> SearchResult:
        depth = k if mode != "hybrid" else max(k, CANDIDATES)
        lex: list[SearchHit] = []
        sem: list[SearchHit] = []
        if text is not None:
            found = await lexical.search_nodes(self.pool, tenant, text, depth)
            lex = [_node_hit(n.node, n.pagerank, n.score, "lexical") for n in found]
        if mode in ("semantic", "hybrid"):
            anchor: np.ndarray | None
            if vector is not None:
                anchor = check_vector(vector, self.settings.graph.embedding_dim)
            else:
                anchor = await nodes.node_embedding(self.pool, tenant, lex[0].id) if lex else None
            if anchor is not None:
                near = await nodes.nearest_nodes(
                    self.pool, tenant, anchor, depth, probes=self.settings.vector.probes
                )
                sem = [_node_hit(n.node, n.pagerank, n.score, "pgvector") for n in near]
        if mode == "semantic":
            lex = []
        return SearchResult(_combine(mode, lex, sem, k), mode, "node", 0.0, _counts(lex, sem))


def _segment_hit(s: lexical.LexicalSegment, source: HitSource) -> SearchHit:
    return SearchHit(
        f"{s.stream_id}:{s.window}:{s.segment}",
        "transcript",
        s.score,
        source,
        (source,),
        stream_id=s.stream_id,
        window=s.window,
        start_s=s.start_s,
        end_s=s.end_s,
        text=s.text,
    )


def _node_hit(node: str, pagerank: float | None, score: float, source: HitSource) -> SearchHit:
    return SearchHit(node, "node", score, source, (source,), node=node, pagerank=pagerank)


def _combine(mode: Mode, lex: Sequence[SearchHit], sem: Sequence[SearchHit], k: int) -> list[SearchHit]:
    """One list (single modes) or the RRF of semantic then lexical, cut to ``k``."""
    if mode == "lexical":
        return list(lex[:k])
    if mode == "semantic":
        return list(sem[:k])
    lists = (sem, lex)
    by_id = [{h.id: h for h in hits} for hits in lists]
    out = []
    for fused in reciprocal_rank_fusion([[h.id for h in hits] for hits in lists])[:k]:
        found = [by_id[i][fused.key] for i, rank in enumerate(fused.ranks) if rank is not None]
        best = by_id[fused.best_list][fused.key]
        sources = tuple(dict.fromkeys(h.source for h in found))
        out.append(
            SearchHit(
                best.id,
                best.kind,
                fused.score,
                best.source,
                sources,
                best.stream_id,
                best.window,
                best.start_s,
                best.end_s,
                best.text,
                best.node,
                best.pagerank,
            )
        )
    return out


def _counts(lex: Sequence[SearchHit], sem: Sequence[SearchHit]) -> dict[str, int]:
    return {"lexical": len(lex), "semantic": len(sem)}


def _check_filters(filters: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise ValueError("filters must be a JSON object")
    if filters and kind != "transcript":
        raise ValueError("filters apply to kind=transcript only")
    out: dict[str, Any] = {}
    for key, value in filters.items():
        want = FILTER_KEYS.get(key)
        if want is None:
            raise ValueError(f"unknown filter {key!r}: use {', '.join(FILTER_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, want):
            raise ValueError(f"filter {key!r} must be a {want.__name__}, got {value!r}")
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"filter {key!r} contains a NUL character (U+0000), which no stream id holds")
        if isinstance(value, int) and not INT32_MIN <= value <= INT32_MAX:
            raise ValueError(f"filter {key!r} must fit a 32-bit integer, got {value}")
        out[key] = value
    return out
