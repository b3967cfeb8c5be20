"""Sharing the Neo4j circuit breaker's state between processes through Redis.

The edge workers publish their breaker's state after every flush and on a heartbeat (a third of the
TTL); the HTTP API reads it to answer 429 with ``Retry-After`` while the breaker is OPEN, even when the
API and workers are separate processes. The key expires ``ingest.breaker_state_ttl_s`` after the last
heartbeat, so a crashed worker cannot hold the API shut for longer than that: a missing key reads as
CLOSED.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

KEY = "wavegraph:breaker:neo4j"
CLOSED, OPEN, HALF_OPEN = 0, 1, 2
NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half_open"}


@dataclass(frozen=True)
class BreakerSnapshot:
    state: int
    reopen_at: float  # epoch seconds at which the breaker lets a trial call through
    updated_at: float

    @property
    def retry_after(self) -> float:
        return max(0.0, self.reopen_at - time.time())


async def publish(client: aioredis.Redis, snapshot: BreakerSnapshot, ttl_s: float) -> None:
    """Store ``snapshot`` under :data:`KEY` for ``ttl_s`` seconds (the publisher must renew it)."""
    payload = orjson.dumps(
        {"state": snapshot.state, "reopen_at": snapshot.reopen_at, "updated_at": snapshot.updated_at}
    )
    await client.set(KEY, payload, px=int(ttl_s * 1000))


async def read(client: aioredis.Redis) -> BreakerSnapshot:
    raw = await client.get(KEY)
    if raw is None:
        return BreakerSnapshot(CLOSED, 0.0, 0.0)
    data = orjson.loads(raw)
    return BreakerSnapshot(int(data["state"]), float(data["reopen_at"]), float(data["updated_at"]))
