"""Running one pipeline: a decoder and sinks behind the stream runtime, until a stop event.

Every ``wavegraph run NAME`` processor (edges, audio, graph) builds its clients and sinks, then calls
:func:`run_pipeline`, which owns what they have in common: the :class:`StreamProcessor` for the
pipeline's consumer group, the ``started`` event, the background tasks that live as long as the
consumer (each takes a stop event; they are stopped and awaited on every way out, so none is left
pending). Only the CLI installs signal handlers: it sets ``stop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from wavegraph.settings import Settings
from wavegraph.streams.processor import Decoder, StreamProcessor
from wavegraph.streams.sink import Sink

T = TypeVar("T")

Background = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def run_pipeline(
    settings: Settings,
    name: str,
    topics: Sequence[str],
    decode: Decoder[T],
    sinks: Sequence[Sink[T]],
    stop: asyncio.Event,
    *,
    started: asyncio.Event | None = None,
    max_batch: int | None = None,
    background: Sequence[Background] = (),
) -> dict[str, int]:
    """Consume ``topics`` as group ``<runtime.group_prefix>.<name>`` through ``sinks`` until ``stop``;
    return the processor's counters."""
    proc: StreamProcessor[T] = StreamProcessor(settings, name, topics, decode, sinks, max_batch=max_batch)
    if started is not None:
        proc.started = started
    done = asyncio.Event()
    tasks: list[asyncio.Task[None]] = [
        asyncio.create_task(job(done), name=f"wavegraph-{name}-{i}") for i, job in enumerate(background)
    ]
    try:
        if not stop.is_set():
            await proc.run(stop)
    finally:
        done.set()
        await asyncio.gather(*tasks)
    return dict(proc.stats)
