"""``wavegraph`` logs quietly unless ``-v``: libraries at WARNING, Kafka's expected start-up retries
as one line. Records go through the real ``aiokafka`` loggers with the messages aiokafka 0.14 logs
(``tests/integration/commands/test_quiet_kafka.py`` causes them on a fresh broker)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from wavegraph.cli import LIBRARY_LOGGERS, ExpectedKafkaStartup, configure_logging

COORDINATOR = "aiokafka.consumer.group_coordinator"
SENDER = "aiokafka.producer.sender"


@pytest.fixture
def quiet() -> Iterator[None]:
    """Configure as the CLI does; restore every touched logger afterwards (other tests share them)."""
    names = [*LIBRARY_LOGGERS, "wavegraph", "wavegraph.asr.whispercpp", COORDINATOR, SENDER]
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).filters)) for n in names}
    configure_logging(verbose=False)
    yield
    for name, (level, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.filters[:] = filters


def _coordinator_burst(n: int) -> None:
    log = logging.getLogger(COORDINATOR)
    for _ in range(n):
        log.error("Group Coordinator Request failed: %s", "[Error 15] GroupCoordinatorNotAvailableError")
        log.warning("Marking the coordinator dead (node %s)for group %s.", 1, "wavegraph-edges")


def test_libraries_log_at_warning_and_wavegraph_at_info(quiet: None) -> None:
    assert all(logging.getLogger(n).getEffectiveLevel() == logging.WARNING for n in LIBRARY_LOGGERS)
    assert logging.getLogger("neo4j.notifications").getEffectiveLevel() == logging.WARNING
    assert not logging.getLogger("aiokafka.conn").isEnabledFor(logging.INFO)
    assert logging.getLogger("wavegraph.streams.processor").isEnabledFor(logging.INFO)
    assert not logging.getLogger("wavegraph.streams.processor").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("wavegraph.asr.whispercpp").isEnabledFor(logging.WARNING)


def test_verbose_lets_everything_through(quiet: None) -> None:
    configure_logging(verbose=True)
    assert logging.getLogger("aiokafka.conn").getEffectiveLevel() == logging.getLogger().level
    assert logging.getLogger("wavegraph.streams.processor").isEnabledFor(logging.DEBUG)
    assert not any(isinstance(f, ExpectedKafkaStartup) for f in logging.getLogger(COORDINATOR).filters)


def test_a_coordinator_retry_burst_is_one_info_line(quiet: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    _coordinator_burst(20)
    logging.getLogger(SENDER).warning(
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        "TopicPartition(topic='wavegraph.edges.v1', partition=2)",
        "<class 'aiokafka.errors.NotLeaderForPartitionError'>",
    )
    logging.getLogger(COORDINATOR).error("OffsetCommit failed for group %s: %s", "g", "UnknownMemberIdError")
    lines = [(r.levelname, r.name, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("INFO", COORDINATOR, ExpectedKafkaStartup.CONDITIONS["coordinator"][1]),
        ("INFO", SENDER, ExpectedKafkaStartup.CONDITIONS["leader"][1]),
        ("ERROR", COORDINATOR, "OffsetCommit failed for group g: UnknownMemberIdError"),  # not expected: kept
    ]


def test_a_later_episode_is_reported_again_once() -> None:
    """``quiet_s=0``: every record starts a new episode, so each one is reported (rewritten)."""
    shown = []
    f = ExpectedKafkaStartup(quiet_s=0.0)
    for _ in range(3):
        record = logging.LogRecord(
            COORDINATOR, logging.ERROR, __file__, 1, "x %s", ("CoordinatorNotAvailable",), None
        )
        shown.append(f.filter(record) and record.levelno)
    assert shown == [logging.INFO] * 3


def test_configuring_twice_installs_one_filter(quiet: None) -> None:
    configure_logging(verbose=False)
    assert sum(isinstance(f, ExpectedKafkaStartup) for f in logging.getLogger(COORDINATOR).filters) == 1
