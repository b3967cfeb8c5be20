"""Start, check and stop the local services together (in parallel), from settings.

``up`` acts on ``services.enabled`` plus any optional service asked for (``services up --with
prometheus``); ``down`` and ``status`` also cover every other known service that is running from the same
state dir, so a Prometheus started with ``--with`` is shown and stopped like the others.

``kafka`` stands for every broker of the cluster (:func:`wavegraph.devservices.kafka.brokers`): ``up``
starts ``kafka.brokers`` of them; ``down`` and ``status`` act on the cluster that runs (the size the last
``up`` recorded), whatever the settings say now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from wavegraph.devservices.base import DownReport, Health, Service, UpReport
from wavegraph.devservices.kafka import Kafka, brokers, running_brokers
from wavegraph.devservices.neo4j import Neo4j
from wavegraph.devservices.postgres import Postgres
from wavegraph.devservices.prometheus import Prometheus
from wavegraph.devservices.redis import Redis
from wavegraph.errors import ConfigError
from wavegraph.settings import Settings

T = TypeVar("T")

SERVICES: dict[str, type[Service]] = {
    "kafka": Kafka,
    "neo4j": Neo4j,
    "postgres": Postgres,
    "redis": Redis,
    "prometheus": Prometheus,
}


def service(settings: Settings, name: str) -> Service:
    """The service called ``name`` (kafka, neo4j, postgres, redis, prometheus) configured by ``settings``."""
    try:
        return SERVICES[name](settings)
    except KeyError:
        raise ConfigError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}") from None


class ServiceManager:
    """``up``/``down``/``status`` over the enabled services (``settings.services.enabled``).

    Every method takes ``only`` (service names) to act on a subset; without it, ``down`` and ``status``
    also include any other service running from this state dir (see :meth:`running_or_selected`).
    Methods are coroutines; from synchronous code use ``asyncio.run(ServiceManager(settings).up())``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def names(self, only: Iterable[str] | None = None, extra: Iterable[str] = ()) -> list[str]:
        """``only`` (default: the enabled services), then each name of ``extra`` not already listed."""
        names = list(self.settings.services.enabled) if only is None else list(only)
        return names + [name for name in extra if name not in names]

    def services(
        self, only: Iterable[str] | None = None, extra: Iterable[str] = (), *, running: bool = False
    ) -> list[Service]:
        """The services of :meth:`names`; ``kafka`` expands to its brokers (``kafka.brokers`` of them,
        or with ``running`` the size of the cluster running from this state dir, when one runs)."""
        found: list[Service] = []
        for name in self.names(only, extra):
            if name == "kafka":
                found += brokers(self.settings, running_brokers(self.settings) if running else None)
            else:
                found.append(service(self.settings, name))
        return found

    def running_or_selected(self, only: Iterable[str] | None = None) -> list[Service]:
        """``only`` when given; else the enabled services plus every other one running from this state
        dir (an optional service started with ``--with``). Kafka is the cluster that runs, if any."""
        if only is not None:
            return self.services(only, running=True)
        enabled = set(self.settings.services.enabled)
        others = [n for n in SERVICES if n not in enabled and _running(self.settings, n)]
        return self.services(None, others, running=True)

    async def up(self, only: Iterable[str] | None = None) -> list[UpReport]:
        """Start every selected service not already healthy, in parallel; raise the first failure
        after all attempts have finished (services that did start stay up). Missing programs are
        reported before anything starts."""
        services = self.services(only)
        for s in services:
            if s.managed and s.pid() is None:
                s.check_prerequisites()
        return await _gather([s.up() for s in services])

    async def down(self, only: Iterable[str] | None = None) -> list[DownReport]:
        return await _gather([s.down() for s in self.running_or_selected(only)])

    async def status(self, only: Iterable[str] | None = None) -> list[Health]:
        return list(await asyncio.gather(*(s.health() for s in self.running_or_selected(only))))

    async def healthy(self, only: Iterable[str] | None = None) -> bool:
        return all(h.ok for h in await self.status(only))


def _running(settings: Settings, name: str) -> bool:
    if name == "kafka":
        return running_brokers(settings) is not None
    return service(settings, name).pid() is not None


async def _gather(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    results = await asyncio.gather(*coros, return_exceptions=True)
    done: list[T] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        done.append(result)
    return done
