"""``wavegraph api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

from wavegraph.settings import load_settings


def api_command(host: str | None = None, port: int | None = None) -> None:
    """Serve the wavegraph HTTP API (ingest, /healthz, /metrics, /docs) until SIGINT/SIGTERM.

    Host and port default to ``http.host`` / ``http.port`` from the settings. In-flight requests get
    ``runtime.shutdown_timeout_s`` to finish on shutdown; then the producer flushes and closes.
    Refuses to start (one sentence naming the setting) when ``http.api_keys`` holds only
    development keys and ``http.allow_dev_keys`` is false, or ``http.metrics_key`` is blank.
    """
    import uvicorn

    from wavegraph.http import create_app

    settings = load_settings()
    config = uvicorn.Config(
        create_app(settings),
        host=host or settings.http.host,
        port=port or settings.http.port,
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.runtime.shutdown_timeout_s),
    )
    uvicorn.Server(config).run()
