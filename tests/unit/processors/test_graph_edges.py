"""EdgeTable: relationship types summed per pair, newest event wins, tombstones, replays are no-ops."""

from __future__ import annotations

import itertools
import random

from wavegraph.events import EdgeEvent
from wavegraph.processors.graph_edges import EdgeTable


def ev(
    src: str, dst: str, ts: float, *, rel: str = "LINKS", weight: float = 1.0, op: str = "upsert"
) -> EdgeEvent:
    return EdgeEvent.model_validate(
        {"tenant": "acme", "src": src, "dst": dst, "rel": rel, "weight": weight, "ts": ts, "op": op}
    )


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
