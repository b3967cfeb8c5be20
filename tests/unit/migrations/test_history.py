"""How the history decides each version's state: failed entries block, repairs and undos un-apply,
``rolled back`` entries change nothing (pure functions over hand-made entries, no database)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from wavegraph.migrations.history import applied, failed, info_rows, problems
from wavegraph.migrations.model import HistoryEntry, Migration

T0 = dt.datetime(2025, 7, 1, 12, 0, tzinfo=dt.UTC)


def _entry(rank: int, version: str, kind: str, success: bool, state: str) -> HistoryEntry:
    prefix = {"apply": "", "undo": "UNDO_", "repair": "REPAIR_"}[kind]
    return HistoryEntry(
        installed_rank=rank,
        version=version,
        description="things",
        type=prefix + "CYPHER",
        script=f"{'U' if kind == 'undo' else 'V'}{version}__things.cypher",
        checksum="c" * 64,
        installed_by="tester",
        installed_on=T0 + dt.timedelta(minutes=rank),
        execution_ms=1,
        success=success,
        state=state,
        before_checksum="b" * 64,
        after_checksum="a" * 64,
        error=None if success else f"boom in {version}",
    )


def _migration(version: str) -> Migration:
    return Migration("neo4j", version, "things", Path(f"V{version}__things.cypher"), "c" * 64, ("RETURN 1",))


def test_a_failed_undo_is_not_applied_and_blocks() -> None:
    history = [_entry(1, "1", "apply", True, "success"), _entry(2, "1", "undo", False, "failed")]
    assert applied(history) == {}
    assert failed(history) == [history[1]]
    [row] = info_rows("neo4j", [_migration("1")], history)
    assert (row.state, row.error) == ("failed", "boom in 1")


def test_an_undo_that_rolled_back_leaves_the_version_applied() -> None:
    history = [_entry(1, "1", "apply", True, "success"), _entry(2, "1", "undo", False, "rolled back")]
    assert list(applied(history)) == [(1,)]
    assert failed(history) == []
    assert info_rows("neo4j", [_migration("1")], history)[0].state == "undo rolled back"


def test_a_failed_apply_that_rolled_back_stays_pending_without_blocking() -> None:
    history = [_entry(1, "1", "apply", False, "rolled back")]
    assert applied(history) == {}
    assert failed(history) == []


def test_a_repair_unblocks_and_leaves_the_version_pending() -> None:
    history = [
        _entry(1, "1", "apply", True, "success"),
        _entry(2, "2", "apply", False, "failed"),
        _entry(3, "2", "repair", True, "repaired"),
    ]
    assert failed(history) == []
    assert list(applied(history)) == [(1,)]
    states = {r.version: r.state for r in info_rows("neo4j", [_migration("1"), _migration("2")], history)}
    assert states == {"1": "success", "2": "repaired"}
    # a repaired version whose file is gone is not reported as a missing applied file
    assert problems([_migration("1")], history) == []


def test_only_the_latest_entry_of_a_version_counts_for_blocking() -> None:
    history = [
        _entry(1, "1", "apply", False, "failed"),
        _entry(2, "1", "repair", True, "repaired"),
        _entry(3, "1", "apply", True, "success"),
        _entry(4, "2", "apply", False, "failed"),
    ]
    assert failed(history) == [history[3]]
    assert list(applied(history)) == [(1,)]
