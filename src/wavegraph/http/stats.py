"""``GET /v1/stats/{statistic}``: differentially private statistics under per-tenant ε budgets.

The tenant is the API key's. Order of work: validate (422 for an unknown statistic, an unknown
parameter, ε ≤ 0 / NaN / infinite / not a number), read the exact answer over the tenant's own data
(:func:`wavegraph.query.dp_stats.measure`; 503 when the store is down, nothing spent), draw the OpenDP
noise, then spend ε in the ledger (:class:`wavegraph.sinks.dp_ledger.Ledger`, one transaction with the
audit row). The noised answer leaves the process only after that transaction committed with the spend
accepted; a refused request gets **403** ``epsilon_budget_exceeded`` (or ``epsilon_above_query_limit``
when ``dp.max_query_epsilon`` is set and ε exceeds it) and spends nothing.

Every answer of the ledger, 200 or 403, carries ``X-Epsilon-Remaining``: the tenant's true remaining
budget after the request (for a refusal, the unchanged remaining budget, so a client can size its next
request). Details and the privacy units: ``docs/dp.md``.
"""

from __future__ import annotations

import hashlib
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import asyncpg
import neo4j.exceptions
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from wavegraph.http.context import ApiContext, context
from wavegraph.http.errors import ApiError
from wavegraph.http.responses import ORJSONResponse
from wavegraph.query import dp_stats
from wavegraph.sinks.dp_ledger import Ledger, format_epsilon

NAME = "stats"
HEADER = "X-Epsilon-Remaining"
RETRY_AFTER_S = "5"
_PG_DOWN = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)
_NEO4J_DOWN = (OSError, TimeoutError, neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.SessionExpired)


async def start(ctx: ApiContext, stack: AsyncExitStack) -> None:
    """Build the ledger over the shared pool (nothing to close: the pool is the lifespan's)."""
    dp = ctx.settings.dp
    ctx.components[NAME] = Ledger(
        ctx.pg,
        default_budget=Decimal(str(dp.default_epsilon_budget)),
        window=dp.budget_window,
        max_query_epsilon=None if dp.max_query_epsilon is None else Decimal(str(dp.max_query_epsilon)),
    )


def _unavailable(store: str) -> ApiError:
    return ApiError(
        503,
        "store_unavailable",
        f"{store} is unreachable; nothing was spent, retry later",
        {"Retry-After": RETRY_AFTER_S},
    )


async def get_statistic(request: Request) -> Response:
    ctx = context(request)
    tenant = ctx.auth.tenant_for(request.headers)
    statistic = request.path_params["statistic"]
    settings = ctx.settings
    try:
        plan = dp_stats.plan(
            statistic,
            dict(request.query_params),
            degree_bound=settings.dp.degree_bound,
            window_s=settings.asr.window_s,
        )
    except dp_stats.InvalidStatQuery as exc:
        raise ApiError(422, exc.code, str(exc), field=exc.field) from None
    store = "PostgreSQL" if plan.statistic.startswith("transcri") else "Neo4j"
    try:
        exact = await dp_stats.measure(
            plan, tenant, neo4j=ctx.neo4j, pg=ctx.pg, database=settings.neo4j.database
        )
    except (*_PG_DOWN, *_NEO4J_DOWN):
        raise _unavailable(store) from None
    released = dp_stats.release(plan, exact)
    result = dp_stats.render(plan, released.values)
    ledger: Ledger = ctx.components[NAME]
    try:
        outcome = await ledger.spend(
            tenant,
            plan.epsilon,
            statistic=plan.statistic,
            query=plan.query,
            mechanism=released.mechanism,
            result_hash=hashlib.sha256(orjson.dumps(result)).hexdigest(),
        )
    except _PG_DOWN:
        raise _unavailable("PostgreSQL (the ε ledger)") from None
    remaining = format_epsilon(outcome.epsilon_remaining)
    headers = {HEADER: remaining}
    if not outcome.allowed:
        if outcome.reason == "query_limit":
            code = "epsilon_above_query_limit"
            detail = (
                f"epsilon {plan.epsilon} is above the per-query limit dp.max_query_epsilon; nothing was spent"
            )
        else:
            code = "epsilon_budget_exceeded"
            detail = (
                f"epsilon {plan.epsilon} does not fit the remaining budget {remaining}; nothing was spent"
            )
        raise ApiError(
            403,
            code,
            detail,
            headers,
            epsilon_requested=float(plan.epsilon),
            epsilon_remaining=float(outcome.epsilon_remaining),
        )
    body = {
        "statistic": plan.statistic,
        "result": result,
        "params": plan.params,
        "mechanism": {
            "name": released.mechanism,
            "scale": released.scale,
            "sensitivity": plan.sensitivity,
            "privacy_unit": plan.privacy_unit,
            "epsilon": released.epsilon_guaranteed,
        },
        "epsilon_spent": float(plan.epsilon),
        "epsilon_remaining": float(outcome.epsilon_remaining),
    }
    return ORJSONResponse(body, headers=headers)


ROUTES: list[BaseRoute] = [
    Route("/v1/stats/{statistic}", get_statistic, methods=["GET"], name="stats"),
]


def _param(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _error(description: str, remaining: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if remaining:
        out["headers"] = {HEADER: _REMAINING}
    return out


_REMAINING = {
    "description": "the tenant's true remaining ε after this request (unchanged by a refusal)",
    "schema": {"type": "string", "example": "2.9"},
}

_EXAMPLE = {
    "statistic": "degree_histogram",
    "result": [{"degree": 1, "count": 41}, {"degree": 2, "count": 17}, {"degree": 3, "count": -2}],
    "params": {"bound": 3},
    "mechanism": {
        "name": "discrete_laplace",
        "scale": 40.0,
        "sensitivity": 4,
        "privacy_unit": "edge",
        "epsilon": 0.1,
    },
    "epsilon_spent": 0.1,
    "epsilon_remaining": 2.9,
}

OPENAPI: dict[str, Any] = {
    "/v1/stats/{statistic}": {
        "get": {
            "summary": "A differentially private statistic of the tenant's data",
            "description": (
                "Spends `epsilon` of the API key's tenant's budget (atomically, audited) and answers the "
                "statistic with OpenDP discrete Laplace noise of scale sensitivity/ε. Noised counts may "
                "be negative (kept so that answers are unbiased). edge_counts (edge-level, Δ=1, needs "
                "`types`), degree_histogram (edge-level, Δ=4, degrees clamped to `bound`), node_count "
                "(edge-level, Δ=2), transcript_counts (window-level, Δ=1) and transcribed_seconds "
                "(window-level, Δ=asr.window_s) per `bucket` between `start` and `end`."
            ),
            "security": [{"bearer": []}, {"apiKey": []}],
            "parameters": [
                {
                    "name": "statistic",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": list(dp_stats.STATISTICS)},
                },
                _param(
                    "epsilon",
                    "ε to spend: 0 < ε ≤ 1000, at most 9 decimal places",
                    {"type": "number", "exclusiveMinimum": 0, "maximum": 1000, "example": 0.1},
                    True,
                ),
                _param(
                    "types",
                    "edge_counts: relationship types, comma-separated (1-100)",
                    {"type": "string", "example": "KNOWS,LIKES"},
                ),
                _param(
                    "bound",
                    "degree_histogram: degree bound D (last bin counts degrees ≥ D); default dp.degree_bound",
                    {"type": "integer", "minimum": 1, "maximum": dp_stats.MAX_DEGREE_BOUND},
                ),
                _param(
                    "start",
                    "transcripts: first bucket start (ISO 8601, UTC when naive); default end - 24 buckets",
                    {"type": "string", "format": "date-time"},
                ),
                _param(
                    "end",
                    "transcripts: end of the range; default now",
                    {"type": "string", "format": "date-time"},
                ),
                _param(
                    "bucket", "transcripts: bucket width", {"type": "string", "enum": list(dp_stats.BUCKETS)}
                ),
            ],
            "responses": {
                "200": {
                    "description": "the noised statistic, the mechanism and the ε spent and remaining",
                    "headers": {HEADER: _REMAINING},
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "statistic": {"type": "string"},
                                    "result": {
                                        "description": "noised values; shape depends on the statistic"
                                    },
                                    "params": {"type": "object"},
                                    "mechanism": {"type": "object"},
                                    "epsilon_spent": {"type": "number"},
                                    "epsilon_remaining": {"type": "number"},
                                },
                                "required": [
                                    "statistic",
                                    "result",
                                    "mechanism",
                                    "epsilon_spent",
                                    "epsilon_remaining",
                                ],
                            },
                            "example": _EXAMPLE,
                        }
                    },
                },
                "401": _error("missing or unknown API key"),
                "403": _error(
                    "ε does not fit the remaining budget (or exceeds dp.max_query_epsilon); nothing spent",
                    True,
                ),
                "422": _error("unknown statistic or parameter, or ε ≤ 0, NaN, infinite or malformed"),
                "503": _error("Neo4j or PostgreSQL unreachable; nothing spent"),
            },
        }
    }
}
