"""Consumer lag of one group on one topic: end offsets minus committed offsets, summed over partitions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from wavegraph.clients import make_admin, make_consumer
from wavegraph.settings import KafkaSettings


class LagProbe:
    """Reads a group's lag on demand; an async context manager owning one admin client and one consumer."""

    def __init__(self, kafka: KafkaSettings, group: str, topic: str, partitions: int) -> None:
        self.group = group
        self.parts = [TopicPartition(topic, p) for p in range(partitions)]
        self._admin = make_admin(kafka, request_timeout_ms=10_000)
        self._consumer = make_consumer(kafka)
        self.max_lag = 0
        self.timeline: list[tuple[float, int]] = []  # (seconds since entering, lag)
        self._origin = time.monotonic()

    async def __aenter__(self) -> LagProbe:
        self._origin = time.monotonic()
        await self._admin.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._admin.close()

    async def end_offsets(self) -> int:
        ends = await self._consumer.end_offsets(self.parts)
        return sum(ends.values())

    async def committed(self, patience_s: float = 30.0) -> int:
        """The group's committed offsets, summed; retriable errors (a coordinator not elected yet on a
        fresh or restarting broker) are retried for up to ``patience_s``."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                offsets = await self._admin.list_consumer_group_offsets(self.group, partitions=self.parts)
                return sum(max(0, meta.offset) for tp, meta in offsets.items() if tp in self.parts)
            except KafkaError as exc:
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def time_commits(
        self,
        target: int,
        check: Callable[[], object],
        poll_s: float = 0.05,
        on_first: Callable[[], object] | None = None,
    ) -> tuple[tuple[float, int] | None, float]:
        """Poll until the group has committed ``target`` records in all, calling ``check`` (which raises
        when a worker died) between polls. Returns ``(first, done)``: the ``time.perf_counter()`` and
        count of the first poll that saw a commit (None if the first poll already saw ``target``: too
        little to time) and the time the target was seen; the rate is ``(target - count) / (done - t)``.
        ``on_first`` runs at that first commit (e.g. to read the workers' CPU clocks)."""
        first: tuple[float, int] | None = None
        while (committed := await self.committed()) < target:
            if committed and first is None:
                first = (time.perf_counter(), committed)
                if on_first is not None:
                    on_first()
            check()
            await asyncio.sleep(poll_s)
        return first, time.perf_counter()

    async def lag(self) -> int:
        """End offsets minus committed offsets (a partition never committed counts from 0)."""
        ends = await self.end_offsets()
        lag = max(0, ends - await self.committed())
        self.max_lag = max(self.max_lag, lag)
        return lag

    async def wait_drained(self, timeout_s: float, poll_s: float = 0.25) -> float:
        """Wait until the lag is 0; return how long that took. ``TimeoutError`` after ``timeout_s``."""
        started = time.monotonic()
        while True:
            try:
                if await self.lag() == 0:
                    return time.monotonic() - started
            except KafkaError:  # the broker may be restarting; ask again
                pass
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"group {self.group} still lags after {timeout_s:.0f}s")
            await asyncio.sleep(poll_s)

    async def sample(self) -> int:
        """Read the lag and append ``(t, lag)`` to :attr:`timeline`."""
        lag = await self.lag()
        self.timeline.append((round(time.monotonic() - self._origin, 1), lag))
        return lag

    async def record(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """:meth:`sample` every ``every_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.sample()
            except KafkaError:
                pass
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass
