"""``GET /metrics``: every wavegraph metric (``wavegraph.metrics.REGISTRY``) in Prometheus text format.

When ``http.metrics_key`` is set, the scraper must send it (``Authorization: Bearer <key>`` or
``X-API-Key: <key>``); a missing or wrong key is 401 with a JSON reason. API keys do not open it.
When ``http.metrics_key`` is unset (``null``, the default) ``/metrics`` is open to anyone who can
reach the port: set a key wherever that port is reachable from outside.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from wavegraph.errors import ConfigError
from wavegraph.http.auth import require_key
from wavegraph.http.context import context
from wavegraph.metrics import REGISTRY


def check_metrics_key(metrics_key: str | None) -> None:
    """Refuse a blank ``http.metrics_key`` at start: it would read as "set" yet match no scraper."""
    if metrics_key is not None and not metrics_key.strip():
        raise ConfigError("http.metrics_key is blank: set a key, or null to leave /metrics open")


async def metrics_endpoint(request: Request) -> Response:
    metrics_key = context(request).settings.http.metrics_key
    if metrics_key is not None:
        require_key(request.headers, metrics_key, "metrics key")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
