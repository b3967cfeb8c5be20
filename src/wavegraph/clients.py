"""The one place that builds clients of the external services, from the settings.

Every Neo4j driver, asyncpg pool, Redis client and Kafka producer/consumer wavegraph opens comes from
here, so timeouts, codecs and delivery guarantees are decided once:

- :func:`neo4j_driver` — async Bolt driver. ``retries=False`` (the edge sink's default) turns off the
  driver's own transaction retries, because the sink retries with its own backoff and counts outages
  toward its breaker; Neo4j's UNRECOGNIZED notifications ("label does not exist" on a fresh database)
  and everything below WARNING are not logged.
- :func:`pg_pool` — asyncpg pool whose connections know pgvector's ``vector``/``halfvec`` binary codec.
- :func:`redis_client` — short socket timeouts: Redis holds shared state (breaker, cache), never data
  that must wait for it.
- :func:`make_producer` — idempotent, ``acks=all``, records up to ``kafka.max_message_bytes``.
- :func:`make_consumer` — auto-commit off (offsets are committed after the sinks flushed), from the
  earliest offset, fetches sized for the largest record.

Clients are returned unstarted/unconnected where the library allows it; their owner opens them in an
``AsyncExitStack`` and closes them in reverse order.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from neo4j import AsyncDriver, AsyncGraphDatabase
from pgvector.asyncpg import register_vector

from wavegraph.settings import KafkaSettings, Neo4jSettings, PostgresSettings, RedisSettings

__all__ = [
    "init_pg_connection",
    "make_consumer",
    "make_producer",
    "neo4j_driver",
    "pg_pool",
    "redis_client",
]


def neo4j_driver(neo4j: Neo4jSettings, *, retries: bool = False) -> AsyncDriver:
    """An async driver for ``neo4j.uri`` (``retries``: let the driver retry transient failures itself)."""
    auth = (neo4j.user, neo4j.password) if neo4j.auth else None
    options: dict[str, Any] = {} if retries else {"max_transaction_retry_time": 0}
    return AsyncGraphDatabase.driver(
        neo4j.uri,
        auth=auth,
        connection_timeout=5.0,
        notifications_min_severity="WARNING",
        notifications_disabled_classifications=["UNRECOGNIZED"],
        **options,
    )


async def init_pg_connection(conn: asyncpg.Connection) -> None:
    """Pool ``init``: the pgvector binary codec for ``vector`` (and ``halfvec``/``sparsevec``)."""
    await register_vector(conn)


async def pg_pool(postgres: PostgresSettings, *, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    """An asyncpg pool on ``postgres.url`` with :func:`init_pg_connection` as its ``init``."""
    pool = await asyncpg.create_pool(
        postgres.url, min_size=min_size, max_size=max_size, init=init_pg_connection
    )
    assert pool is not None
    return pool


def redis_client(redis: RedisSettings, *, timeout_s: float = 1.0) -> aioredis.Redis:
    """A Redis client on ``redis.url`` whose connects and reads give up after ``timeout_s``."""
    return aioredis.Redis.from_url(redis.url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def make_producer(
    kafka: KafkaSettings,
    *,
    linger_ms: int = 5,
    client_id: str = "wavegraph",
    request_timeout_ms: int = 40_000,
    transactional_id: str | None = None,
) -> AIOKafkaProducer:
    """An unstarted idempotent ``acks=all`` producer; ``await producer.start()`` (or use a stack).

    ``request_timeout_ms`` also bounds how long ``send`` waits for a topic's metadata;
    ``transactional_id`` makes it transactional (``kafka.transaction_timeout_ms``)."""
    return AIOKafkaProducer(
        transactional_id=transactional_id,
        transaction_timeout_ms=kafka.transaction_timeout_ms,
        bootstrap_servers=kafka.bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_request_size=kafka.max_message_bytes,
        max_batch_size=min(1024 * 1024, kafka.max_message_bytes),
        request_timeout_ms=request_timeout_ms,
    )


def make_consumer(
    kafka: KafkaSettings, *topics: str, group_id: str | None = None, **options: Any
) -> AIOKafkaConsumer:
    """An unstarted consumer (auto-commit off, earliest offset, fetches for the largest record);
    ``options`` are passed to :class:`AIOKafkaConsumer` (``client_id``, ``max_poll_records``, ...)."""
    settings: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": kafka.max_message_bytes,
        "fetch_max_bytes": max(kafka.max_message_bytes, 52_428_800),
        **options,
    }
    return AIOKafkaConsumer(*topics, **settings)


def make_admin(kafka: KafkaSettings, *, request_timeout_ms: int = 30_000) -> AIOKafkaAdminClient:
    """An unstarted admin client; ``await admin.start()``, ``await admin.close()``."""
    return AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, request_timeout_ms=request_timeout_ms)
