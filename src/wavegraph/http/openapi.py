"""``GET /openapi.json`` (a hand-written OpenAPI 3.1 document) and ``GET /docs`` (a plain HTML page).

The spec is written out rather than generated from docstrings so that request bodies, every status an
endpoint answers and the error shape are documented; the edge event schema is taken from
:class:`wavegraph.events.EdgeEvent`, so it cannot drift from the validation. ``/docs`` renders the same
document as HTML without any script or CDN (the machines it runs on may be offline).
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

import wavegraph
from wavegraph.events import EdgeEvent
from wavegraph.http.components import COMPONENTS
from wavegraph.http.responses import ORJSONResponse

_REF_TEMPLATE = "#/components/schemas/{model}"


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        out["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return out


def _ingest() -> dict[str, Any]:
    event = {"$ref": "#/components/schemas/EdgeEvent"}
    return {
        "post": {
            "summary": "Ingest edge events",
            "description": (
                "A JSON array of edge events, one JSON object, or NDJSON (one event per line, "
                "`Content-Type: application/x-ndjson`). Every event must belong to the API key's tenant. "
                "Answered 202 only after Kafka acknowledged every event; all-or-nothing at validation."
            ),
            "security": [{"bearer": []}, {"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"oneOf": [event, {"type": "array", "items": event}]}},
                    "application/x-ndjson": {"schema": {"type": "string", "description": "an event a line"}},
                },
            },
            "responses": {
                "202": {
                    "description": "every event acknowledged by Kafka",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"accepted": {"type": "integer", "minimum": 0}},
                                "required": ["accepted"],
                            }
                        }
                    },
                },
                "401": _error("missing or unknown API key"),
                "403": _error("an event of another tenant (errors name the lines)"),
                "413": _error("body larger than http.max_body_bytes, or batch larger than the send queue"),
                "415": _error("content type is neither JSON nor NDJSON"),
                "422": _error("invalid events: errors list line (1-based), field and reason"),
                "429": _error("send queue full or Neo4j breaker open; retry after Retry-After", True),
                "503": _error("Kafka did not acknowledge in time; retrying is safe", True),
            },
        }
    }


def _plain(summary: str, media: str, ok: str, fail: str | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok, "content": {media: {}}}}
    if fail:
        responses["503"] = {"description": fail, "content": {media: {}}}
    return {"get": {"summary": summary, "responses": responses}}


@cache
def openapi_spec() -> dict[str, Any]:
    event_schema = EdgeEvent.model_json_schema(ref_template=_REF_TEMPLATE, mode="validation")
    schemas: dict[str, Any] = event_schema.pop("$defs", {})
    schemas["EdgeEvent"] = event_schema
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "machine-readable code, e.g. invalid_event"},
            "detail": {"type": "string", "description": "what went wrong, in one sentence"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "line": {"type": "integer", "minimum": 1},
                        "field": {"type": ["string", "null"]},
                        "reason": {"type": "string"},
                    },
                },
            },
            "retry_after": {"type": "integer", "minimum": 1},
        },
        "required": ["error", "detail"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "wavegraph API", "version": wavegraph.__version__},
        "paths": {
            "/v1/ingest/edges": _ingest(),
            "/healthz": _plain(
                "Per-dependency status (Kafka, Redis, Neo4j breaker)",
                "application/json",
                "every dependency is ok",
                "at least one dependency is not ok",
            ),
            "/metrics": _plain("Prometheus metrics", "text/plain", "metrics in the text exposition format"),
            "/openapi.json": _plain("This document", "application/json", "the OpenAPI document"),
            "/docs": _plain("This document in Swagger UI", "text/html", "an HTML page"),
            **{path: item for component in COMPONENTS for path, item in component.OPENAPI.items()},
        },
        "components": {
            "schemas": schemas,
            "headers": {
                "RetryAfter": {"description": "seconds to wait (≥ 1)", "schema": {"type": "integer"}}
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


async def openapi_endpoint(request: Request) -> Response:
    return ORJSONResponse(openapi_spec())


SWAGGER_STATIC = "/docs/static"


def swagger_ui_files() -> Path:
    """Swagger UI's static files, from the ``swagger-ui-bundle`` wheel (served offline, no CDN)."""
    return Path(swagger_ui_bundle.swagger_ui_path)


async def docs_endpoint(request: Request) -> Response:
    """Swagger UI over ``/openapi.json``; without JavaScript, the same routes as a plain HTML list."""
    spec = openapi_spec()
    title = html.escape(f"{spec['info']['title']} {spec['info']['version']}")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><link rel='stylesheet' href='{SWAGGER_STATIC}/swagger-ui.css'></head><body>"
        "<div id='swagger-ui'></div>"
        f"<script src='{SWAGGER_STATIC}/swagger-ui-bundle.js'></script>"
        "<script>window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui', "
        "deepLinking: true});</script>"
        f"<noscript>{render_docs(spec)}</noscript></body></html>"
    )
    return HTMLResponse(page)


def render_docs(spec: dict[str, Any]) -> str:
    esc = html.escape
    sections = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            rows = "".join(
                f"<tr><td>{esc(code)}</td><td>{esc(resp['description'])}</td></tr>"
                for code, resp in op["responses"].items()
            )
            sections.append(
                f"<section><h2><code>{esc(method.upper())} {esc(path)}</code></h2>"
                f"<p><b>{esc(op['summary'])}</b></p><p>{esc(op.get('description', ''))}</p>"
                f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table></section>"
            )
    fields = "".join(
        f"<tr><td><code>{esc(name)}</code></td><td>{esc(str(prop.get('type', prop.get('anyOf', ''))))}</td>"
        f"<td>{esc(str(prop.get('description', '')))}</td></tr>"
        for name, prop in spec["components"]["schemas"]["EdgeEvent"]["properties"].items()
    )
    title = esc(f"{spec['info']['title']} {spec['info']['version']}")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:60em;margin:auto}}"
        "td,th{text-align:left;padding:2px 8px}</style></head><body>"
        f"<h1>{title}</h1><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"
        + "".join(sections)
        + f"<h2>Edge event</h2><table><tr><th>field</th><th>type</th><th>description</th></tr>{fields}"
        "</table></body></html>"
    )
