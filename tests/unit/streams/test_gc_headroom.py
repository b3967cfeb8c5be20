"""The collector's youngest generation gets room for a batch while a processor runs, then its old value."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from wavegraph.streams.gc_headroom import OBJECTS_PER_RECORD, gc_headroom


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    before, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*before)
    (gc.enable if enabled else gc.disable)()


def test_raises_the_young_threshold_for_the_block_and_restores_it() -> None:
    gc.set_threshold(700, 10, 10)
    with gc_headroom(1000) as young:
        assert young == OBJECTS_PER_RECORD * 1000
        assert gc.get_threshold() == (young, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_never_lowers_a_higher_threshold_and_leaves_a_disabled_collector_alone() -> None:
    gc.set_threshold(1_000_000, 5, 5)
    with gc_headroom(10) as young:
        assert young == 1_000_000 and gc.get_threshold() == (1_000_000, 5, 5)
    gc.set_threshold(700, 10, 10)
    gc.disable()
    with gc_headroom(1000):
        assert gc.get_threshold() == (700, 10, 10)


def test_a_threshold_changed_meanwhile_by_someone_else_is_kept() -> None:
    gc.set_threshold(700, 10, 10)
    with gc_headroom(1000):
        gc.set_threshold(5000, 10, 10)
    assert gc.get_threshold() == (5000, 10, 10)
