"""EdgeTable: relationship types summed per pair, one winner per typed edge whatever the arrival order
(larger ts; at equal ts a delete; then the larger event id; then the larger weight), tombstones,
replays are no-ops."""

from __future__ import annotations

import itertools
import random

from wavegraph.events import EdgeEvent
from wavegraph.processors.graph_job.edge_table import EdgeTable


def ev(
    src: str,
    dst: str,
    ts: float,
    *,
    rel: str = "LINKS",
    weight: float = 1.0,
    op: str = "upsert",
    event_id: str | None = None,
) -> EdgeEvent:
    fields = {"tenant": "acme", "src": src, "dst": dst, "rel": rel, "weight": weight, "ts": ts, "op": op}
    if event_id is not None:
        fields["event_id"] = event_id
    return EdgeEvent.model_validate(fields)


def test_relationship_types_are_summed_per_pair() -> None:
    table = EdgeTable()
    change = table.apply([ev("a", "b", 1, weight=2.0), ev("a", "b", 1, rel="KNOWS", weight=0.5)])
    assert (change.src, change.dst, change.weight) == (["a"], ["b"], [2.5])
    change = table.apply([ev("a", "b", 2, rel="KNOWS", op="delete")])
    assert change.weight == [2.0] and not change.removed_src
    change = table.apply([ev("a", "b", 3, op="delete")])
    assert (change.removed_src, change.removed_dst, change.src) == (["a"], ["b"], [])
    assert table.pair_weight("a", "b") is None


def test_a_zero_weight_edge_keeps_its_pair() -> None:
    table = EdgeTable()
    assert table.apply([ev("a", "b", 1, weight=0.0)]).weight == [0.0]
    assert table.pair_weight("a", "b") == 0.0


def test_newest_event_wins_and_a_delete_is_not_undone_by_an_older_upsert() -> None:
    table = EdgeTable()
    table.apply([ev("a", "b", 5, weight=3.0)])
    assert len(table.apply([ev("a", "b", 4, weight=9.0)])) == 0  # older: ignored
    assert table.apply([ev("a", "b", 6, op="delete")]).removed_src == ["a"]
    late = table.apply([ev("a", "b", 5.5, weight=7.0)])  # older than the tombstone
    assert len(late) == 0 and late.nodes == ["a", "b"]
    assert table.apply([ev("a", "b", 7, weight=1.0)]).weight == [1.0]


def test_the_result_does_not_depend_on_the_arrival_order() -> None:
    events = [
        ev("a", "b", 1, weight=1.0),
        ev("a", "b", 2, op="delete"),
        ev("a", "b", 1, rel="KNOWS", weight=0.25),
        ev("b", "c", 3, weight=2.0),
        ev("b", "c", 1, weight=5.0),
        ev("c", "a", 4, op="delete"),
        ev("c", "a", 2, weight=1.5),
    ]
    results = set()
    for order in itertools.islice(itertools.permutations(events), 0, None, 97):
        table = EdgeTable()
        for chunk in _chunks(list(order)):
            table.apply(chunk)
        results.add(tuple(table.pair_weight(s, d) for s, d in [("a", "b"), ("b", "c"), ("c", "a")]))
    assert results == {(0.25, 2.0, None)}


def _chunks(events: list[EdgeEvent]) -> list[list[EdgeEvent]]:
    rng = random.Random(len(events))
    cut = rng.randrange(len(events) + 1)
    return [events[:cut], events[cut:]]


def test_a_replayed_batch_changes_nothing() -> None:
    table = EdgeTable()
    batch = [
        ev("a", "b", 1, weight=2.0),
        ev("b", "a", 1),
        ev("a", "b", 2, rel="KNOWS"),
        ev("b", "a", 3, op="delete"),
    ]
    first = table.apply(batch)
    assert len(first) == 1  # b → a was added and removed within the batch: no net change
    assert len(table.apply(batch)) == 0


def test_a_delete_then_an_older_upsert_in_separate_batches_leaves_the_edge_deleted() -> None:
    table = EdgeTable()
    assert len(table.apply([ev("a", "b", 10, op="delete")])) == 0  # a tombstone for an unseen edge
    late = table.apply([ev("a", "b", 9, weight=4.0)])
    assert len(late) == 0 and late.nodes == ["a", "b"] and table.pair_weight("a", "b") is None
    assert table.apply([ev("a", "b", 11, weight=4.0)]).weight == [4.0]  # newer: back


def single_edge_outcome(events: list[EdgeEvent]) -> set[float | None]:
    """The weight of a → b after applying ``events`` in every order (one event per batch)."""
    outcomes = set()
    for order in itertools.permutations(events):
        table = EdgeTable()
        for event in order:
            table.apply([event])
        outcomes.add(table.pair_weight("a", "b"))
    return outcomes


def test_at_equal_ts_a_delete_beats_an_upsert_in_either_order() -> None:
    assert single_edge_outcome([ev("a", "b", 5, weight=2.0), ev("a", "b", 5, op="delete")]) == {None}
    table = EdgeTable()
    table.apply([ev("a", "b", 5, op="delete"), ev("a", "b", 5, weight=2.0)])  # within one batch too
    assert table.pair_weight("a", "b") is None


def test_at_equal_ts_and_op_the_larger_event_id_wins_in_any_order() -> None:
    events = [
        ev("a", "b", 5, weight=1.0, event_id="e1"),
        ev("a", "b", 5, weight=3.0, event_id="e3"),
        ev("a", "b", 5, weight=2.0, event_id="e2"),
    ]
    assert single_edge_outcome(events) == {3.0}
    # a producer's id against a default id (a 32-hex hash): plain string comparison decides
    default = ev("a", "b", 5, weight=7.0)
    given = ev("a", "b", 5, weight=8.0, event_id="~after-every-hex-digit")
    assert default.event_id < given.event_id
    assert single_edge_outcome([default, given]) == {8.0}
    low = ev("a", "b", 5, weight=9.0, event_id="0")
    assert low.event_id < default.event_id
    assert single_edge_outcome([default, low]) == {7.0}


def test_with_equal_ids_the_larger_weight_wins_so_the_order_does_not_matter() -> None:
    # same edge, ts and op, no producer id: both events get the same default id
    assert single_edge_outcome([ev("a", "b", 5, weight=1.0), ev("a", "b", 5, weight=4.0)]) == {4.0}


def test_ties_across_types_pairs_and_batches_do_not_depend_on_the_arrival_order() -> None:
    events = [
        ev("a", "b", 1, weight=1.0, event_id="x"),
        ev("a", "b", 1, weight=2.0, event_id="y"),
        ev("a", "b", 1, op="delete", event_id="a"),
        ev("a", "b", 1, rel="KNOWS", weight=0.5),
        ev("a", "b", 1, rel="KNOWS", weight=0.75),
        ev("b", "c", 2, weight=3.0, event_id="m"),
        ev("b", "c", 2, op="delete", event_id="z"),
        ev("b", "c", 1, weight=6.0),
    ]
    rng = random.Random(7)
    results = set()
    for _ in range(300):
        order = events[:]
        rng.shuffle(order)
        table = EdgeTable()
        for chunk in _chunks(order):
            table.apply(chunk)
        results.add((table.pair_weight("a", "b"), table.pair_weight("b", "c")))
    assert results == {(0.75, None)}
