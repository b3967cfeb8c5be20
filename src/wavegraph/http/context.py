"""What the endpoints share: settings and the clients the lifespan opened (``app.state.ctx``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from neo4j import AsyncDriver
from starlette.requests import Request

from wavegraph.http.auth import Authenticator
from wavegraph.http.backpressure import BreakerGate, SendQueue
from wavegraph.settings import Settings

if TYPE_CHECKING:  # health.py imports this module
    from wavegraph.http.health import HealthCache

ACK_TIMEOUT_S = 10.0  # longest an ingest request waits for the broker before answering 503
KAFKA_RETRY_AFTER_S = 5.0  # Retry-After of a 503 when Kafka does not answer


@dataclass(frozen=True)
class ApiContext:
    """``pg`` connects lazily (``min_size=0``) and ``neo4j`` on first use, so the ingest API starts
    without PostgreSQL or Neo4j; the read-side routes answer 503 while they are unreachable."""

    settings: Settings
    producer: AIOKafkaProducer
    redis: aioredis.Redis
    auth: Authenticator
    send_queue: SendQueue
    breaker: BreakerGate
    health: HealthCache
    pg: asyncpg.Pool
    neo4j: AsyncDriver
    ack_timeout_s: float = ACK_TIMEOUT_S
    # what each read-side component (search, explain, stats, cache) keeps, under its own name
    components: dict[str, Any] = field(default_factory=dict)


def context(request: Request) -> ApiContext:
    """The running app's context; a 500 if the lifespan was not entered (a wiring bug, not a user's)."""
    ctx = getattr(request.app.state, "ctx", None)
    if not isinstance(ctx, ApiContext):
        raise RuntimeError("the wavegraph API lifespan is not running (no app.state.ctx)")
    return ctx
