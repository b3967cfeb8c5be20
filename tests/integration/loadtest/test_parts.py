"""The scenario building blocks that need no server: workload, isolation, malformed events, checks."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from aiokafka.structs import ConsumerRecord

from wavegraph.errors import InvalidEvent
from wavegraph.events import EdgeEvent
from wavegraph.loadtest.bad_input import KINDS, malformed, stream
from wavegraph.loadtest.breaker import SINK_LOGGER, BreakerRecorder
from wavegraph.loadtest.outage import _went_0_1_2_0
from wavegraph.loadtest.scope import new_scope, settings_env
from wavegraph.loadtest.workload import EdgeWorkload
from wavegraph.processors.edges.decoder import edge_decoder
from wavegraph.settings import Settings, load_settings


def record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, 0, 0, 0, None, value, None, 0, len(value), [])


def test_workload_events_are_distinct_valid_edges_that_lead_back_to_their_event() -> None:
    wl = EdgeWorkload("acme", "r1", degree=4)
    events = [EdgeEvent.model_validate(wl.event(i)) for i in range(200)]
    assert len({e.edge_key for e in events}) == 200
    assert max(Counter(e.src for e in events).values()) == max(Counter(e.dst for e in events).values()) == 4
    assert [wl.index_of(e.event_id) for e in events] == list(range(200))
    assert [wl.index_of_edge(e.src, e.dst) for e in events] == list(range(200))
    assert all((e.rel, e.weight, e.ts, e.event_id) == wl.props(i) for i, e in enumerate(events))
    assert wl.props(23) == ("LINKS", 23 / 8, 1_800_000_000.023, "r1-23")
    assert [wl.index_of_edge("n0", f"n{d}") for d in range(7)] == [None, 0, 1, 2, 3, None, None]
    assert wl.index_of_edge("m1", "n2") is None and wl.index_of_edge("n1", "x") is None
    with pytest.raises(ValueError):
        wl.index_of("other-3")


def test_a_scope_isolates_topics_group_and_tenant_and_survives_the_trip_to_a_subprocess() -> None:
    settings = Settings()
    scope = new_scope(settings, "burst", ingest={"breaker_timeout_s": 2.0})
    assert scope.topic != settings.kafka.topics.edges and scope.dlq != settings.kafka.topics.dlq
    assert scope.group == f"{scope.settings.runtime.group_prefix}.edges" != "wavegraph.edges"
    assert scope.settings.http.api_keys[scope.api_key] == scope.tenant
    assert scope.settings.http.api_keys["dev-key-acme"] == "acme"
    child = load_settings(env=settings_env(scope.settings))
    for section in ("kafka", "neo4j", "redis", "runtime", "ingest", "http"):
        assert getattr(child, section) == getattr(scope.settings, section), section


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_malformed_kind_is_refused_by_the_edge_decoder_with_its_reason(kind: str) -> None:
    scope = new_scope(Settings(), "bad")
    decode = edge_decoder(scope.settings)
    limit = scope.settings.runtime.max_event_bytes
    decode(record(scope.workload.value(7)))  # the unspoiled event is fine
    with pytest.raises(InvalidEvent) as info:
        decode(record(malformed(kind, scope.workload, 7, limit)))
    assert KINDS[kind] in info.value.reason


def test_the_stream_spoils_two_percent_cycling_through_the_kinds() -> None:
    events = 50 * len(KINDS) * 2  # one in 50 malformed: each kind twice
    records, bad = stream(EdgeWorkload("acme", "r"), events, 2.0, 4096)
    assert len(records) == events and len(bad) == 2 * len(KINDS)
    assert sorted(bad.values()) == sorted(list(KINDS) * 2)
    assert all(records[i][2] == [("lt.kind", kind.encode())] for i, kind in bad.items())


@pytest.mark.parametrize(
    ("path", "held"),
    [
        ([0, 1, 2, 0], True),
        ([0, 1, 2, 1, 2, 1, 2, 0], True),
        ([0, 1, 2], False),
        ([0, 1, 2, 1], False),
        ([0, 1, 0], False),
        ([], False),
    ],
)
def test_the_breaker_path_figure(path: list[int], held: bool) -> None:
    assert _went_0_1_2_0(path) is held


def test_the_recorder_reads_the_sinks_transition_records() -> None:
    log = logging.getLogger(SINK_LOGGER)
    with BreakerRecorder() as rec:
        log.warning("neo4j breaker %s -> %s", "closed", "open")
        log.warning("something else")
        log.warning("neo4j breaker %s -> %s", "open", "half_open")
        log.warning("neo4j breaker %s -> %s", "half_open", "closed")
    log.warning("neo4j breaker %s -> %s", "closed", "open")  # after exit: not recorded
    assert rec.path == [0, 1, 2, 0]
    assert [(lo <= hi) for lo, hi in rec.open_intervals()] == [True]
