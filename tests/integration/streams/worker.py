"""A consumer process for the SIGKILL test: ``python worker.py TOPIC GROUP RECORD_FILE``.

Runs the real StreamProcessor with a RecordingSink that appends every flushed event to RECORD_FILE.
The sink sleeps a little per batch so that the test can kill the process mid-stream.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from recording import RecordingSink

from wavegraph.events import EdgeEvent, decode_edge
from wavegraph.settings import load_settings
from wavegraph.streams.processor import StreamProcessor
from wavegraph.streams.sink import Item


class SlowRecordingSink(RecordingSink):
    async def write(self, batch: list[Item[EdgeEvent]]) -> None:
        await asyncio.sleep(0.05)
        await super().write(batch)


async def main(topic: str, group: str, record: Path) -> None:
    settings = load_settings()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    limit = settings.runtime.max_event_bytes
    proc: StreamProcessor[EdgeEvent] = StreamProcessor(
        settings,
        "kill-test",
        [topic],
        lambda r: decode_edge(r.value, limit),
        [SlowRecordingSink(record)],
        group_id=group,
        max_batch=200,
    )
    await proc.run(stop)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
