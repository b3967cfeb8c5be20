"""PostgreSQL full-text search over transcript segments and node ids (migration V2026.12.1).

**Segments.** ``transcript_segments.search_tsv`` is a STORED generated column,
``to_tsvector('english', text)`` (stemmed, English stop words dropped), with a GIN index; PostgreSQL
fills it in the writer's own transaction, so a segment is searchable the moment it is committed. A query
is parsed with the same configuration into lexemes; a segment matches when it holds **any** of them (an
OR query, so "what did zq7vex ship" still finds a segment naming only zq7vex). Matches are ranked by a
BM25-style sum of inverse document frequencies over the distinct query lexemes the segment holds,
``idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))`` with ``N`` the tenant's segments and ``n_t`` those
holding ``t`` (each counted through the GIN index), doubled when the segment holds the query as a phrase
(``phraseto_tsquery``), ties broken by ``ts_rank_cd``. A rare name therefore outranks a segment sharing
only common words; ``ts_rank`` alone has no IDF and would not. Term frequency and length are ignored:
segments are a sentence or two. Cost: one GIN probe per query lexeme plus the tenant's count (by the
primary key's tenant prefix).

**Nodes.** ``node_embeddings.search_tsv`` is ``to_tsvector('simple', node)`` after every run of
non-alphanumeric characters became a space, so ``user:ada_lovelace`` is found by ``lovelace`` or
``ada lovelace``. Any query word matches; an exact id match ranks first, then ``ts_rank``, then PageRank.

Every query is filtered by the tenant first (the tenant comes from the API key, never the request).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["LexicalNode", "LexicalSegment", "search_nodes", "search_segments"]

_SEGMENTS = """
WITH terms AS (
    SELECT DISTINCT quote_literal(t.lexeme)::tsquery AS q
    FROM unnest(tsvector_to_array(to_tsvector('english', $2::text))) AS t(lexeme)
), any_term AS (
    SELECT string_agg(quote_literal(t.lexeme), ' | ')::tsquery AS q
    FROM unnest(tsvector_to_array(to_tsvector('english', $2::text))) AS t(lexeme)
), total AS (
    SELECT count(*)::float8 AS n FROM transcript_segments WHERE tenant = $1
), df AS (
    SELECT terms.q, (SELECT count(*) FROM transcript_segments s
                     WHERE s.tenant = $1 AND s.search_tsv @@ terms.q)::float8 AS n
    FROM terms
)
SELECT s.stream_id, s.window_index, s.segment, s.start_s, s.end_s, s.text,
       sum(ln(1 + (total.n - df.n + 0.5) / (df.n + 0.5)))
         * CASE WHEN bool_or(s.search_tsv @@ phraseto_tsquery('english', $2::text)) THEN 2 ELSE 1 END
         AS score,
       max(ts_rank_cd(s.search_tsv, any_term.q)) AS tiebreak
FROM transcript_segments s
CROSS JOIN total
CROSS JOIN any_term
JOIN df ON s.search_tsv @@ df.q
WHERE s.tenant = $1 AND s.search_tsv @@ any_term.q {where}
GROUP BY s.tenant, s.stream_id, s.window_index, s.segment
ORDER BY score DESC, tiebreak DESC, s.stream_id, s.window_index, s.segment
LIMIT {k}
"""

_NODES = """
WITH any_term AS (
    SELECT string_agg(quote_literal(t.lexeme), ' | ')::tsquery AS q
    FROM unnest(tsvector_to_array(
        to_tsvector('simple', regexp_replace($2::text, '[^[:alnum:]]+', ' ', 'g')))) AS t(lexeme)
)
SELECT n.node, n.pagerank,
       (n.node = $2::text)::int + ts_rank(n.search_tsv, any_term.q) AS score
FROM node_embeddings n CROSS JOIN any_term
WHERE n.tenant = $1 AND n.search_tsv @@ any_term.q
ORDER BY score DESC, n.pagerank DESC NULLS LAST, n.node
LIMIT {k}
"""


@dataclass(frozen=True, slots=True)
class LexicalSegment:
    """A segment matching the query: where it was said and its lexical ``score`` (higher is better)."""

    stream_id: str
    window: int
    segment: int
    start_s: float
    end_s: float
    text: str
    score: float

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> LexicalSegment:
        """From a ``transcript_segments`` row with ``stream_id, window_index, segment, start_s, end_s,
        text`` and a ``score`` column (the lexical and the semantic queries both select these)."""
        return cls(
            r["stream_id"],
            int(r["window_index"]),
            int(r["segment"]),
            float(r["start_s"]),
            float(r["end_s"]),
            r["text"],
            float(r["score"]),
        )


@dataclass(frozen=True, slots=True)
class LexicalNode:
    """A node whose id matches the query words."""

    node: str
    pagerank: float | None
    score: float


async def search_segments(
    pool: asyncpg.Pool,
    tenant: str,
    text: str,
    k: int,
    *,
    stream_id: str | None = None,
    window: int | None = None,
) -> list[LexicalSegment]:
    """The ``k`` best segments of ``tenant`` for ``text`` (see the module doc), best first.

    ``stream_id`` / ``window`` restrict the matches (not the IDF statistics). A text with no searchable
    word (only stop words or punctuation) matches nothing. ``k`` must be a positive int (spliced into
    the SQL so the plan knows it).
    """
    k = _check_k(k)
    args: list[object] = [tenant, text]
    where = ""
    if stream_id is not None:
        args.append(stream_id)
        where += f" AND s.stream_id = ${len(args)}"
    if window is not None:
        args.append(int(window))
        where += f" AND s.window_index = ${len(args)}"
    rows = await pool.fetch(_SEGMENTS.format(where=where, k=k), *args)
    return [LexicalSegment.from_row(r) for r in rows]


async def search_nodes(pool: asyncpg.Pool, tenant: str, text: str, k: int) -> list[LexicalNode]:
    """The ``k`` nodes of ``tenant`` whose id best matches the words of ``text``, best first."""
    rows = await pool.fetch(_NODES.format(k=_check_k(k)), tenant, text)
    return [
        LexicalNode(r["node"], None if r["pagerank"] is None else float(r["pagerank"]), float(r["score"]))
        for r in rows
    ]


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return k
