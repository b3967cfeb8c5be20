"""The Starlette application: an explicit route list, pure ASGI middleware and one lifespan.

The lifespan opens every client in one ``AsyncExitStack`` (closed in reverse order, each closing
once): it makes sure the edges topic exists, starts the idempotent Kafka producer (flushed on exit, so
acknowledged-but-unanswered events still reach the broker) and opens the Redis client. Kafka must be
reachable at start (the app refuses to start otherwise); Redis need not be (ingest then ignores the
breaker and ``/healthz`` says so).

:func:`create_app` checks the security settings before anything starts, raising :class:`ConfigError`
(one sentence naming the setting): ``http.api_keys`` holding only development keys while
``http.allow_dev_keys`` is false (see :mod:`wavegraph.http.auth`), or a blank ``http.metrics_key``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from wavegraph.clients import make_producer, neo4j_driver, pg_pool, redis_client
from wavegraph.http.auth import Authenticator
from wavegraph.http.backpressure import BreakerGate, SendQueue
from wavegraph.http.components import COMPONENTS
from wavegraph.http.context import ACK_TIMEOUT_S, ApiContext
from wavegraph.http.errors import EXCEPTION_HANDLERS
from wavegraph.http.health import HealthCache, healthz
from wavegraph.http.ingest import ingest_edges
from wavegraph.http.metrics_route import check_metrics_key, metrics_endpoint
from wavegraph.http.middleware import RequestContextMiddleware
from wavegraph.http.openapi import SWAGGER_STATIC, docs_endpoint, openapi_endpoint, swagger_ui_files
from wavegraph.settings import Settings
from wavegraph.streams.topics import ensure_topics

log = logging.getLogger(__name__)

BREAKER_CACHE_S = 0.2  # the breaker state is read from Redis at most this often


def create_app(settings: Settings, *, ack_timeout_s: float = ACK_TIMEOUT_S) -> Starlette:
    """The wavegraph HTTP API. Serve it with uvicorn, or enter ``app.router.lifespan_context(app)``.

    Raises :class:`wavegraph.errors.ConfigError` at once when the security settings are unusable.
    """
    auth = Authenticator(settings.http.api_keys, allow_dev_keys=settings.http.allow_dev_keys)
    check_metrics_key(settings.http.metrics_key)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await ensure_topics(settings.kafka, [settings.kafka.topics.edges, settings.kafka.topics.audio])
            producer = make_producer(settings.kafka, client_id="wavegraph-api")
            stack.push_async_callback(producer.stop)  # safe when start() failed, and idempotent
            await producer.start()
            client = redis_client(settings.redis)
            stack.push_async_callback(client.aclose)
            pool = await pg_pool(settings.postgres, min_size=0, max_size=4)  # connects on first use
            stack.push_async_callback(pool.close)
            driver = neo4j_driver(settings.neo4j, retries=True)
            stack.push_async_callback(driver.close)
            app.state.ctx = ctx = ApiContext(
                settings=settings,
                producer=producer,
                redis=client,
                auth=auth,
                send_queue=SendQueue(settings.http.send_queue),
                breaker=BreakerGate(client, ttl_s=BREAKER_CACHE_S),
                health=HealthCache(settings.http.health_cache_s),
                pg=pool,
                neo4j=driver,
                ack_timeout_s=ack_timeout_s,
            )
            stack.callback(delattr, app.state, "ctx")
            for component in COMPONENTS:
                await component.start(ctx, stack)
            log.info("wavegraph API ready: producing to %s", settings.kafka.topics.edges)
            yield

    routes = [
        Route("/v1/ingest/edges", ingest_edges, methods=["POST"], name="ingest_edges"),
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Route("/metrics", metrics_endpoint, methods=["GET"], name="metrics"),
        Route("/openapi.json", openapi_endpoint, methods=["GET"], name="openapi"),
        Route("/docs", docs_endpoint, methods=["GET"], name="docs"),
        Mount(SWAGGER_STATIC, app=StaticFiles(directory=swagger_ui_files()), name="swagger-ui"),
        *(route for component in COMPONENTS for route in component.ROUTES),
    ]
    middleware = [Middleware(RequestContextMiddleware)]
    if settings.http.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.http.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
                expose_headers=["Retry-After", "X-Request-ID", "Server-Timing"],
            )
        )
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan
    )
