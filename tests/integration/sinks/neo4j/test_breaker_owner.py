"""The breaker state shared through the real Redis cannot outlive the worker that published it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis.asyncio as aioredis

from wavegraph.settings import Settings
from wavegraph.sinks import breaker_state

pytestmark = pytest.mark.services

WORKER = """
import asyncio, sys
import redis.asyncio as aioredis
from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent
from wavegraph.clients import neo4j_driver
from wavegraph.settings import load_settings
from wavegraph.sinks.neo4j import Neo4jEdgeSink
from wavegraph.streams.sink import Item

async def main(port: int) -> None:
    s = load_settings()
    ingest = s.ingest.model_copy(update={
        "breaker_fail_max": 1, "retry_attempts": 0, "breaker_timeout_s": 600, "breaker_state_ttl_s": 1.5})
    sink = Neo4jEdgeSink(neo4j_driver(s.neo4j.model_copy(update={"bolt_port": port})), ingest,
                         aioredis.Redis.from_url(s.redis.url))
    await sink.write([Item(EdgeEvent(tenant="acme", src="a", dst="b", ts=1.0), "t", 0, 0, b"")])
    try:
        await sink.flush()
    except SinkBackpressureError:
        pass
    print("open", flush=True)
    await sink.heartbeat(asyncio.Event())  # until killed

asyncio.run(main(int(sys.argv[1])))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_open_breaker_expires_once_its_worker_is_killed(services: Settings) -> None:
    """The worker's breaker opens for real (its Neo4j port has no listener) with a 600 s timeout;
    while it lives its heartbeat keeps the OPEN state beyond the 1.5 s TTL; SIGKILL ends that."""
    client = aioredis.Redis.from_url(services.redis.url)
    await client.delete(breaker_state.KEY)
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(_free_port())], stdout=subprocess.PIPE, env=os.environ.copy()
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.strip() == b"open"
        await asyncio.sleep(3.0)  # twice the TTL: only the heartbeat keeps the key
        alive = await breaker_state.read(client)
        assert alive.state == breaker_state.OPEN and alive.retry_after > 500
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = time.monotonic()
        while (await breaker_state.read(client)).state == breaker_state.OPEN:
            assert time.monotonic() - killed_at < 5.0, "the OPEN state outlived its worker"
            await asyncio.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        await client.delete(breaker_state.KEY)
        await client.aclose()
