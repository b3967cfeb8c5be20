"""The first consumer-group join on a fresh broker prints at most one line about the group coordinator.

A fresh Kafka creates ``__consumer_offsets`` on the first FindCoordinator request and answers
``GroupCoordinatorNotAvailable`` until it exists: aiokafka logs that at ERROR (and "Marking the
coordinator dead" at WARNING) on every retry. With the CLI's logging (:func:`configure_logging`) the
burst is one INFO line. A throwaway broker (its own port and data) makes the start really fresh; a
counting filter placed ahead of ours proves aiokafka did report the condition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from wavegraph.cli import LIBRARY_LOGGERS, ExpectedKafkaStartup, configure_logging
from wavegraph.clients import make_consumer, make_producer
from wavegraph.migrations.scratch import scratch
from wavegraph.settings import Settings
from wavegraph.streams.topics import ensure_topics

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

LOGGERS = ("aiokafka.consumer.group_coordinator", "aiokafka.producer.sender")


class Count(logging.Filter):
    """Counts what aiokafka logs about the coordinator, before any other filter sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.coordinator = 0

    def filter(self, record: logging.LogRecord) -> bool:
        markers = ExpectedKafkaStartup.CONDITIONS["coordinator"][0]
        self.coordinator += any(m in record.getMessage() for m in markers)
        return True


@pytest.fixture
def cli_logging() -> Iterator[Count]:
    names = [*LIBRARY_LOGGERS, "wavegraph", "wavegraph.asr.whispercpp", *LOGGERS]
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).filters)) for n in names}
    count = Count()
    logging.getLogger(LOGGERS[0]).addFilter(count)  # first in line
    configure_logging(verbose=False)
    yield count
    for name, (level, filters) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).filters[:] = filters


async def _first_join(settings: Settings) -> int:
    async with scratch(settings, "kafka") as fresh:
        await ensure_topics(fresh.kafka)
        topic = fresh.kafka.topics.edges
        producer = make_producer(fresh.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"{}", key=b"k")
        finally:
            await producer.stop()
        consumer = make_consumer(fresh.kafka, topic, group_id="wavegraph-quiet-test")
        await consumer.start()
        try:
            got = 0
            for _ in range(30):
                batches = await consumer.getmany(timeout_ms=1000)
                got += sum(len(records) for records in batches.values())
                if got:
                    break
            return got
        finally:
            await consumer.stop()


def test_the_first_group_join_on_a_fresh_broker_is_one_line(
    settings: Settings, cli_logging: Count, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert asyncio.run(_first_join(settings)) == 1
    assert cli_logging.coordinator >= 1  # aiokafka did report it (the condition happened)
    kafka = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("aiokafka")]
    coordinator = [m for _, m in kafka if "coordinator" in m.lower()]
    assert coordinator == [ExpectedKafkaStartup.CONDITIONS["coordinator"][1]], kafka
    assert [m for level, m in kafka if level in ("WARNING", "ERROR")] == []
