"""The HTTP API under test, served in this process: an httpx client on the app's ASGI interface.

The app's lifespan is entered (Kafka producer, Redis client), exactly as uvicorn would; only the
socket is skipped. A :class:`Prober` sends one event at a fixed interval and records each answer with
its ``Retry-After`` and error code, the evidence that the API says 429 while the breaker is OPEN.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import orjson

from wavegraph.http import create_app
from wavegraph.loadtest.http_client import INGEST_PATH
from wavegraph.loadtest.workload import EdgeWorkload
from wavegraph.settings import Settings


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose requests go to ``create_app(settings)`` in this process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://wavegraph") as client:
            yield client


@dataclass(frozen=True)
class ProbeAnswer:
    at: float  # time.time() when the answer arrived
    seq: int
    status: int
    error: str | None
    retry_after: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Prober:
    """Every ``interval_s``, POST event ``first + k`` of ``workload``; keep every answer (no retries)."""

    def __init__(
        self, client: httpx.AsyncClient, api_key: str, workload: EdgeWorkload, first: int, interval_s: float
    ) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/x-ndjson"}
        self.workload = workload
        self.first = first
        self.interval_s = interval_s
        self.answers: list[ProbeAnswer] = []

    @property
    def accepted(self) -> list[int]:
        return [a.seq for a in self.answers if a.status == 202]

    async def run(self, stop: asyncio.Event) -> None:
        seq = self.first
        while not stop.is_set():
            body = orjson.dumps(self.workload.event(seq))
            try:
                r = await self.client.post(INGEST_PATH, content=body, headers=self.headers, timeout=30)
                error = r.json().get("error") if r.status_code >= 400 else None
                self.answers.append(
                    ProbeAnswer(time.time(), seq, r.status_code, error, r.headers.get("retry-after"))
                )
            except httpx.TransportError as exc:
                self.answers.append(ProbeAnswer(time.time(), seq, 0, type(exc).__name__, None))
            seq += 1
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                pass
