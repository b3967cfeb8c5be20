"""``GET /v1/explain/{node}`` and ``/ui/explain``: a node's neighbourhood and HAA attention.

``GET /v1/explain/{node}?hops=1|2&limit=N`` answers ``{"node", "nodes": [{id, pagerank, degree}],
"edges": [{src, dst, rel, weight}], "attn": [{src, dst, weight}], "svg": <base64 SVG>}`` for the API
key's tenant (:func:`wavegraph.query.explain.explain` says what each field holds, and
:mod:`wavegraph.query.svg` what the picture shows). ``limit`` defaults to
``read.explain_default_limit`` and may not exceed ``read.explain_max_limit``. The node id is the rest
of the path, percent-decoded (ids may contain ``/``).

Answers: 400 for a bad ``hops``/``limit``; 401 without a valid key; 404 ``unknown_node`` when the
tenant has no such node (another tenant's node included: nothing tells them apart); 503
``store_unavailable`` with ``Retry-After`` when Neo4j or PostgreSQL cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
from neo4j.exceptions import ServiceUnavailable, SessionExpired
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from wavegraph.http import ui
from wavegraph.http.cache import cached
from wavegraph.http.context import ApiContext, context
from wavegraph.http.errors import ApiError
from wavegraph.http.responses import ORJSONResponse
from wavegraph.query.explain import UnknownNode, explain
from wavegraph.query.svg import explanation_svg, svg_base64

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
STORE_DOWN = (
    ServiceUnavailable,
    SessionExpired,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncio.TimeoutError,
)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}, got {value}")
    return value


async def explain_node(request: Request) -> Response:
    ctx = context(request)
    tenant = ctx.auth.tenant_for(request.headers)
    node = request.path_params["node"]
    read = ctx.settings.read
    hops = _int_param(request, "hops", 1, 1, 2)
    limit = _int_param(request, "limit", read.explain_default_limit, 1, read.explain_max_limit)
    graph = ctx.settings.graph
    try:
        found = await explain(
            ctx.neo4j,
            ctx.pg,
            tenant,
            node,
            hops=1 if hops == 1 else 2,
            limit=limit,
            curvature=graph.curvature,
            temperature=graph.haa_temperature,
            database=ctx.settings.neo4j.database,
        )
    except UnknownNode:
        raise ApiError(404, "unknown_node", f"tenant {tenant!r} has no node {node!r}") from None
    except STORE_DOWN as exc:
        log.warning("explain: a store is unreachable: %r", exc)
        raise ApiError(
            503,
            "store_unavailable",
            f"Neo4j or PostgreSQL cannot be reached ({type(exc).__name__}); retry later",
            {"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    body = found.to_json()
    body["svg"] = svg_base64(explanation_svg(found.node, found.nodes, found.edges, found.attn))
    return ORJSONResponse(body)


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_EXAMPLE = {
    "node": "Valjean",
    "nodes": [
        {"id": "Valjean", "pagerank": 0.0755, "degree": 36},
        {"id": "Javert", "pagerank": 0.0304, "degree": 17},
    ],
    "edges": [{"src": "Valjean", "dst": "Javert", "rel": "APPEARS_WITH", "weight": 17.0}],
    "attn": [{"src": "Valjean", "dst": "Javert", "weight": 0.0412}],
    "svg": "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=",
}

OPENAPI: dict[str, Any] = {
    "/v1/explain/{node}": {
        "get": {
            "summary": "Explain a node: its neighbourhood and the HAA attention over its neighbours",
            "description": (
                "The API key's tenant's node, its neighbours (hop 1 by attention, highest first; with "
                "hops=2 then hop-2 nodes by PageRank) up to `limit` nodes, every relationship between "
                "them, the hyperbolic attention weights with which the node's neighbours were "
                "aggregated into its embedding (they sum to 1 over all its embedded neighbours), and a "
                "node-link SVG (base64) with edge width ∝ attention."
            ),
            "security": [{"bearer": []}, {"apiKey": []}],
            "parameters": [
                {"name": "node", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "hops", "in": "query", "schema": {"type": "integer", "enum": [1, 2], "default": 1}},
                {
                    "name": "limit",
                    "in": "query",
                    "description": "most nodes besides the explained one (read.explain_max_limit at most)",
                    "schema": {"type": "integer", "minimum": 1, "default": 50},
                },
            ],
            "responses": {
                "200": {
                    "description": "the neighbourhood",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["node", "nodes", "edges", "attn", "svg"],
                                "properties": {
                                    "node": {"type": "string"},
                                    "nodes": {"type": "array", "items": {"type": "object"}},
                                    "edges": {"type": "array", "items": {"type": "object"}},
                                    "attn": {"type": "array", "items": {"type": "object"}},
                                    "svg": {"type": "string", "contentEncoding": "base64"},
                                },
                            },
                            "example": _EXAMPLE,
                        }
                    },
                },
                "400": _error("hops is not 1 or 2, or limit is not an integer in range"),
                "401": _error("missing or unknown API key"),
                "404": _error("the tenant has no such node"),
                "503": _error("Neo4j or PostgreSQL cannot be reached; retry after Retry-After"),
            },
        }
    },
    **ui.OPENAPI,
}

ROUTES: list[BaseRoute] = [
    Route("/v1/explain/{node:path}", cached(explain_node, kind="explain"), methods=["GET"], name="explain"),
    *ui.ROUTES,
]


async def start(ctx: ApiContext, stack: AsyncExitStack) -> None:
    """Nothing to open: the shared Neo4j driver and PostgreSQL pool are enough."""
