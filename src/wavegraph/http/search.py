"""``GET|POST /v1/search``: hybrid search over a tenant's transcripts (segment level) and nodes.

``GET /v1/search?q=TEXT&kind=transcript|node&k=10&mode=hybrid|semantic|lexical`` and
``POST /v1/search`` with a JSON object ``{"q" | "vector", "kind", "k", "mode", "filters"}``. Defaults:
``kind=transcript``, ``mode=hybrid``, ``k=10`` (1..``read.max_k``). The tenant is the API key's, never the
request's. Answer 200 ``{"hits": [...], "mode", "kind", "k", "took_ms", "embed_ms"}``; the retrieval is
:class:`wavegraph.query.hybrid.HybridSearch` (full-text ⊕ FAISS/pgvector, RRF).

Errors: 401 no/unknown key; 422 ``invalid_search`` for anything wrong with the request (k out of range
or not an integer, both or neither of q and vector, a vector of the wrong dimension or with NaN/inf or
zero norm, unknown mode/kind/filter/parameter, a body that is not a JSON object; JSON has no NaN, so a
``NaN`` literal is invalid JSON); 503 ``store_unavailable`` (``Retry-After``) when PostgreSQL cannot
answer within :data:`QUERY_TIMEOUT_S`, and 503 ``embedder_unavailable`` when text is to be embedded but
the MiniLM model could not be loaded at start.

``start`` loads the text embedder (in a thread), opens the FAISS index of ``vector.index_dir`` when
``vector.backend`` is ``faiss`` and rebuilds it from PostgreSQL in a tracked background task (pgvector
answers meanwhile, and whenever FAISS lags: see :mod:`wavegraph.query.search`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from wavegraph.errors import MissingPrerequisite
from wavegraph.http.cache import cached
from wavegraph.http.context import ApiContext, context
from wavegraph.http.errors import ApiError
from wavegraph.http.ingest import read_body
from wavegraph.http.responses import ORJSONResponse
from wavegraph.query.embedding_cache import EmbeddingCache
from wavegraph.query.hybrid import KINDS, MODES, HybridSearch, Kind, Mode, SearchResult
from wavegraph.query.search import SearchService
from wavegraph.sinks.faiss import IndexCorrupt
from wavegraph.sinks.pgvector import PgVectorStore

log = logging.getLogger(__name__)

NAME = "search"
QUERY_TIMEOUT_S = 10.0
RETRY_AFTER_S = 5
MAX_BODY_BYTES = 1 << 20
GET_PARAMS = ("q", "kind", "k", "mode")
STORE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


class SearchBody(BaseModel):
    """The JSON body of ``POST /v1/search``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    q: str | None = Field(None, min_length=1, max_length=4096)
    vector: list[float] | None = Field(None, min_length=1, max_length=4096)
    kind: Kind = "transcript"
    k: int = Field(10, strict=True)
    mode: Mode = "hybrid"
    filters: dict[str, Any] | None = None


def _invalid(detail: str, **extra: Any) -> ApiError:
    return ApiError(422, "invalid_search", detail, **extra)


def _from_query(request: Request) -> SearchBody:
    params = request.query_params
    unknown = sorted(set(params) - set(GET_PARAMS))
    if unknown:
        raise _invalid(f"unknown query parameter(s) {', '.join(unknown)}: use {', '.join(GET_PARAMS)}")
    if "q" not in params:
        raise _invalid("GET needs q=TEXT (POST a JSON body to search by vector)")
    k_raw = params.get("k", "10")
    try:
        k = int(k_raw)
    except ValueError:
        raise _invalid(f"k must be an integer, got {k_raw!r}") from None
    return _validate(
        {
            "q": params["q"],
            "kind": params.get("kind", "transcript"),
            "k": k,
            "mode": params.get("mode", "hybrid"),
        }
    )


async def _from_body(request: Request) -> SearchBody:
    raw = await read_body(request, MAX_BODY_BYTES)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"the body is not valid JSON (NaN and Infinity are not JSON): {exc}") from None
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object")
    return _validate(data)


def _validate(data: dict[str, Any]) -> SearchBody:
    try:
        return SearchBody.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or None, "reason": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        first = errors[0]
        raise _invalid(f"{first['field']}: {first['reason']}", errors=errors) from None


async def search_endpoint(request: Request) -> Response:
    started = time.perf_counter()
    ctx = context(request)
    tenant = ctx.auth.tenant_for(request.headers)
    body = _from_query(request) if request.method == "GET" else await _from_body(request)
    hybrid: HybridSearch = ctx.components[NAME]
    if body.q is not None and body.mode != "lexical" and hybrid.vectors.embedder is None:
        raise ApiError(
            503, "embedder_unavailable", "the text embedder could not be loaded; see the server log"
        )
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            result = await hybrid.search(
                tenant,
                text=body.q,
                vector=body.vector,
                kind=body.kind,
                mode=body.mode,
                k=body.k,
                filters=body.filters,
            )
    except ValueError as exc:  # InvalidVector is a ValueError too
        raise _invalid(str(exc)) from None
    except STORE_ERRORS as exc:
        log.warning("search: PostgreSQL unavailable: %r", exc)
        raise ApiError(
            503,
            "store_unavailable",
            f"PostgreSQL did not answer ({type(exc).__name__}); retry later",
            {"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    return ORJSONResponse(_answer(result, body.k, started))


def _answer(result: SearchResult, k: int, started: float) -> dict[str, Any]:
    return {
        "hits": [h.to_json() for h in result.hits],
        "mode": result.mode,
        "kind": result.kind,
        "k": k,
        "took_ms": round((time.perf_counter() - started) * 1000.0, 3),
        "embed_ms": round(result.embed_ms, 3),
    }


ROUTES: list[BaseRoute] = [
    Route("/v1/search", cached(search_endpoint, kind="search"), methods=["GET", "POST"], name="search")
]


async def start(ctx: ApiContext, stack: AsyncExitStack) -> None:
    """Load the embedder, open the vector service (FAISS rebuilt in the background) and put a
    :class:`HybridSearch` in ``ctx.components["search"]``; the service is closed on exit."""
    settings = ctx.settings
    embedder = None
    try:
        from wavegraph.processors.embed_text import TextEmbedder

        model = await asyncio.to_thread(TextEmbedder)
        # query embeddings shared by every API process of the host, bounded in bytes (LMDB)
        embedder = EmbeddingCache.from_settings(settings, model)
        stack.callback(embedder.close)
    except MissingPrerequisite as exc:
        log.error("search: no text embedder (%s); text queries other than lexical answer 503", exc)
    store = PgVectorStore(settings, pool=ctx.pg)
    try:
        service = await SearchService.open(settings, store, embedder)
    except (IndexCorrupt, OSError) as exc:
        log.error("search: FAISS index unusable (%s); pgvector answers", exc)
        service = SearchService(settings, store, None, embedder)
    stack.push_async_callback(service.close)
    await service.start(wait=False)
    ctx.components[NAME] = HybridSearch(settings, ctx.pg, service)


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        out["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return out


_HIT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "stream_id:window:segment, or the node id"},
        "kind": {"type": "string", "enum": list(KINDS)},
        "score": {
            "type": "number",
            "description": "RRF score (hybrid), cosine (semantic), IDF sum (lexical)",
        },
        "source": {"type": "string", "enum": ["faiss", "pgvector", "lexical"]},
        "sources": {"type": "array", "items": {"type": "string"}},
        "stream_id": {"type": "string"},
        "window": {"type": "integer"},
        "start_s": {"type": "number"},
        "end_s": {"type": "number"},
        "text": {"type": "string", "description": "what was said in that segment"},
        "node": {"type": "string"},
        "pagerank": {"type": ["number", "null"]},
    },
    "required": ["id", "kind", "score", "source"],
}
_EXAMPLE = {
    "hits": [
        {
            "id": "call-42:3:1",
            "kind": "transcript",
            "score": 0.0325,
            "source": "lexical",
            "sources": ["lexical", "faiss"],
            "stream_id": "call-42",
            "window": 3,
            "start_s": 93.2,
            "end_s": 97.8,
            "text": "the parcel zq7vex left the depot this morning",
        }
    ],
    "mode": "hybrid",
    "kind": "transcript",
    "k": 10,
    "took_ms": 14.2,
    "embed_ms": 5.1,
}
_OK = {
    "description": "hits, best first",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "hits": {"type": "array", "items": _HIT},
                    "mode": {"type": "string", "enum": list(MODES)},
                    "kind": {"type": "string", "enum": list(KINDS)},
                    "k": {"type": "integer"},
                    "took_ms": {"type": "number"},
                    "embed_ms": {"type": "number"},
                },
                "required": ["hits", "mode", "kind", "took_ms"],
            },
            "example": _EXAMPLE,
        }
    },
}
_RESPONSES = {
    "200": _OK,
    "401": _error("missing or unknown API key"),
    "422": _error(
        "invalid request: k out of range, q and vector both or neither, bad vector, unknown mode..."
    ),
    "503": _error("PostgreSQL (or the text embedder) unavailable; retry after Retry-After", True),
}
_VECTOR_DIMS = "vector.dim (384) for transcripts, graph.embedding_dim (64) for nodes"
_DESCRIPTION = (
    "Hybrid retrieval over the API key's tenant: PostgreSQL full-text (generated tsvector + GIN, IDF-ranked) "
    "fused by reciprocal rank fusion with vector search (FAISS, or pgvector while FAISS lags). Transcripts "
    "are answered per segment (stream, window, time range, text); nodes by id words (lexical) and graph "
    "embedding (semantic: a vector of graph.embedding_dim, or the embedding of the node the text names)."
)
OPENAPI: dict[str, Any] = {
    "/v1/search": {
        "get": {
            "summary": "Search transcripts or nodes by text",
            "description": _DESCRIPTION,
            "security": [{"bearer": []}, {"apiKey": []}],
            "parameters": [
                {"name": "q", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1}},
                {
                    "name": "kind",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(KINDS), "default": "transcript"},
                },
                {
                    "name": "k",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    "description": "number of hits, 1..read.max_k (100 by default)",
                },
                {
                    "name": "mode",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(MODES), "default": "hybrid"},
                },
            ],
            "responses": _RESPONSES,
        },
        "post": {
            "summary": "Search transcripts or nodes by text or vector",
            "description": _DESCRIPTION + " Exactly one of q and vector.",
            "security": [{"bearer": []}, {"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "q": {"type": "string", "minLength": 1},
                                "vector": {
                                    "type": "array",
                                    "items": {"type": "number"},
                                    "description": _VECTOR_DIMS,
                                },
                                "kind": {"type": "string", "enum": list(KINDS), "default": "transcript"},
                                "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                                "mode": {"type": "string", "enum": list(MODES), "default": "hybrid"},
                                "filters": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "stream_id": {"type": "string"},
                                        "window": {"type": "integer"},
                                    },
                                },
                            },
                        },
                        "example": {
                            "q": "where was zq7vex shipped",
                            "k": 5,
                            "filters": {"stream_id": "call-42"},
                        },
                    }
                },
            },
            "responses": _RESPONSES,
        },
    }
}
