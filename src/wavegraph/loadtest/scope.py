"""What keeps one scenario run apart from everything else on the same services.

A :class:`Scope` is a copy of the settings with the run's own edges and dead-letter topics, its own
consumer-group prefix and its own tenant (a tenant exists when it owns an API key, so the scope adds
one). :func:`private_services` swaps chosen services for throwaway instances (``devservices.ephemeral``):
the Neo4j breaker state lives under one fixed Redis key, so every scenario that runs an edge processor
or the API uses its own Redis, and the destructive scenarios stop and start their own Neo4j or Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from wavegraph.clients import make_admin
from wavegraph.devservices.base import ServiceError
from wavegraph.devservices.ephemeral import ephemeral
from wavegraph.loadtest.workload import EdgeWorkload
from wavegraph.settings import ENV_PREFIX, KafkaSettings, Settings
from wavegraph.streams.processor import default_group_id
from wavegraph.streams.topics import delete_topics, ensure_topics

log = logging.getLogger(__name__)

START_ATTEMPTS = 2  # throwaway instances get a second chance to start
# The sections a worker subprocess needs to see exactly as the scenario configured them.
_ENV_SECTIONS = ("kafka", "neo4j", "postgres", "redis", "runtime", "ingest", "http", "graph")


@dataclass(frozen=True)
class Scope:
    """One run: its settings (own topics, group prefix, tenant and API key) and its workload."""

    name: str
    run: str
    tenant: str
    api_key: str
    settings: Settings

    @property
    def group(self) -> str:
        """The edge processor's consumer group (``StreamProcessor`` names it ``<prefix>.edges``)."""
        return default_group_id(self.settings, "edges")

    @property
    def topic(self) -> str:
        return self.settings.kafka.topics.edges

    @property
    def dlq(self) -> str:
        return self.settings.kafka.topics.dlq

    @property
    def partitions(self) -> int:
        return self.settings.kafka.partitions

    @property
    def workload(self) -> EdgeWorkload:
        return EdgeWorkload(self.tenant, self.run)


def new_scope(
    settings: Settings,
    name: str,
    *,
    ingest: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
) -> Scope:
    """A fresh scope for scenario ``name``; ``ingest``/``runtime`` override those settings."""
    run = uuid.uuid4().hex[:10]
    tenant = f"lt-{name}-{run}"
    api_key = f"lt-key-{run}"
    kafka = settings.kafka
    topics = kafka.topics.model_copy(
        update={"edges": f"loadtest.{name}.{run}.edges", "dlq": f"loadtest.{name}.{run}.dlq"}
    )
    scoped = settings.model_copy(
        update={
            "kafka": kafka.model_copy(update={"topics": topics}),
            "runtime": settings.runtime.model_copy(
                update={"group_prefix": f"loadtest.{name}.{run}", **(runtime or {})}
            ),
            "ingest": settings.ingest.model_copy(update=dict(ingest or {})),
            "http": settings.http.model_copy(
                update={"api_keys": {**settings.http.api_keys, api_key: tenant}}
            ),
        }
    )
    return Scope(name, run, tenant, api_key, scoped)


@asynccontextmanager
async def scope_topics(scope: Scope) -> AsyncIterator[Scope]:
    """Create the scope's edges and dead-letter topics; delete them on exit."""
    kafka = scope.settings.kafka
    await ensure_topics(kafka, [scope.topic, scope.dlq], partitions=scope.partitions)
    await wait_for_leaders(kafka, [scope.topic, scope.dlq], scope.partitions)
    try:
        yield scope
    finally:
        await delete_topics(kafka, [scope.topic, scope.dlq])


async def wait_for_leaders(
    kafka: KafkaSettings, topics: list[str], partitions: int, timeout_s: float = 30.0
) -> None:
    """Wait until every partition of ``topics`` has a leader (a new topic has none for a moment, and
    producers then log NotLeaderForPartition warnings while they retry)."""
    admin = make_admin(kafka, request_timeout_ms=10_000)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            described = await admin.describe_topics(topics)
            led = sum(
                1 for t in described for p in t["partitions"] if t["error_code"] == 0 and p["leader"] >= 0
            )
            if led >= partitions * len(topics):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topics}: {led} partitions with a leader after {timeout_s:.0f}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """``WAVEGRAPH_<SECTION>__<KEY>`` variables that make ``load_settings()`` in a subprocess see the
    sections a worker uses exactly as in ``settings`` (values as JSON, which the loader reads as YAML)."""
    env: dict[str, str] = {}

    def walk(prefix: str, data: Mapping[str, Any]) -> None:
        for key, value in data.items():
            name = f"{prefix}__{key.upper()}"
            if isinstance(value, dict) and key != "api_keys":
                walk(name, value)
            else:
                env[name] = orjson.dumps(value).decode()

    for section in _ENV_SECTIONS:
        walk(f"{ENV_PREFIX}{section.upper()}", getattr(settings, section).model_dump(mode="json"))
    return env


@asynccontextmanager
async def private_services(settings: Settings, *names: str) -> AsyncIterator[Settings]:
    """``settings`` with the services ``names`` replaced by throwaway instances (started here, stopped
    and deleted on exit). ``services.state_dir`` points at the throwaway directory, so
    ``devservices.manager.service(result, name)`` acts on the private instance of ``name`` (and finds
    nothing to stop for any other name: to stop a shared server, use the original settings)."""
    if not names:
        yield settings
        return
    async with AsyncExitStack() as stack:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                scratch = await stack.enter_async_context(ephemeral(settings, *names))
                break
            except ServiceError:  # e.g. a free port taken by someone else between lookup and bind
                if attempt == START_ATTEMPTS:
                    raise
        private = with_private(settings, scratch, names)
        if "neo4j" in names:
            await apply_schema(private)
        yield private


async def apply_schema(settings: Settings) -> bool:
    """Give the (throwaway) Neo4j of ``settings`` the production schema by applying the project's Neo4j
    migrations, among them the (tenant, id) constraint every MERGE of the edge sink looks nodes up by.
    Without a ``migrations/`` tree here, warn and return False (the scenarios still hold, slower)."""
    from wavegraph.migrations import apply
    from wavegraph.migrations.discover import DEFAULT_LOCATION

    if not DEFAULT_LOCATION.is_dir():
        log.warning("no %s here: the throwaway Neo4j gets no schema (no node index)", DEFAULT_LOCATION)
        return False
    await apply(settings, dbs=("neo4j",))
    return True


def with_private(settings: Settings, scratch: Settings, names: Iterable[str]) -> Settings:
    """``settings`` with the sections of ``names`` (and ``services``) taken from ``scratch``, the
    settings :func:`wavegraph.devservices.ephemeral.ephemeral` yielded for them."""
    update: dict[str, Any] = {name: getattr(scratch, name) for name in names}  # topic names are kept
    update["services"] = scratch.services
    return settings.model_copy(update=update)


def run_with_private(
    settings: Settings, scenario: Callable[[Settings], Awaitable[dict[str, Any]]], *private: str
) -> dict[str, Any]:
    """``asyncio.run`` of ``scenario(settings)`` with the services ``private`` replaced by throwaway
    instances (for the commands; aiokafka's reconnect chatter during faults is kept to errors)."""

    async def main() -> dict[str, Any]:
        async with private_services(settings, *private) as s:
            return await scenario(s)

    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    return asyncio.run(main())
