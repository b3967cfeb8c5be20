"""wavegraph's HTTP API (Starlette): ingest, health, metrics, OpenAPI. See :func:`create_app`."""

from wavegraph.http.app import create_app

__all__ = ["create_app"]
