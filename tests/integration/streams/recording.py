"""A sink for tests that records what it made durable, in memory and optionally in a file."""

from __future__ import annotations

import os
from pathlib import Path

from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent
from wavegraph.streams.sink import Item, Rejection


class RecordingSink:
    """Buffers on ``write``; on ``flush`` appends ``partition offset event_id`` lines and fsyncs.

    ``backpressure_times`` makes the first N writes raise :class:`SinkBackpressureError`.
    """

    def __init__(
        self, path: Path | None = None, backpressure_times: int = 0, retry_after: float = 0.2
    ) -> None:
        self.path = path
        self.pending: list[Item[EdgeEvent]] = []
        self.flushed: list[tuple[int, int, str]] = []
        self.backpressure_left = backpressure_times
        self.retry_after = retry_after
        self.rejected_batches: list[tuple[int, int]] = []  # (partition, first offset) of refused batches
        self.accepted_batches: list[list[tuple[int, int]]] = []

    async def write(self, batch: list[Item[EdgeEvent]]) -> None:
        if self.backpressure_left > 0:
            self.backpressure_left -= 1
            firsts: dict[int, int] = {}
            for it in batch:
                firsts.setdefault(it.partition, it.offset)
            self.rejected_batches.extend(sorted(firsts.items()))
            raise SinkBackpressureError(self.retry_after, "test sink is full")
        self.pending.extend(batch)
        self.accepted_batches.append([(it.partition, it.offset) for it in batch])

    async def flush(self) -> list[Rejection[EdgeEvent]]:
        rows = [(it.partition, it.offset, it.value.event_id) for it in self.pending]
        if self.path is not None and rows:
            with self.path.open("a") as fh:
                fh.writelines(f"{p} {o} {e}\n" for p, o, e in rows)
                fh.flush()
                os.fsync(fh.fileno())
        self.flushed.extend(rows)
        self.pending.clear()
        return []
