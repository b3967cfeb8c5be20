"""``migrate repair``: clear a ``failed`` history entry once the operator has fixed the database by hand.

A migration is recorded as ``failed`` when its apply failed and the automatic undo did not bring the
content back (or raised), or when an explicit ``rollback`` stopped at a failing ``U`` statement. The
database is then in a state no script describes, so ``apply`` and ``rollback`` refuse to run on it
(:class:`~.errors.RepairNeeded`).

What repair does: for each version of the target whose latest history entry is ``failed`` (only
``version`` when one is given), it appends an entry of type ``REPAIR_CYPHER`` / ``REPAIR_SQL`` in state
``repaired``, holding the current content checksum (as both before and after), who ran it and when. The
failed entry stays: the history is an audit trail, nothing is updated or deleted. From then on the
version counts as not applied: the next ``apply`` runs its ``V`` script again, ``rollback`` skips it.

What repair does not do: it runs no statement in the database. It undoes nothing, finishes nothing and
does not check that the fix is right. Before running it, the operator brings the database back to its
state from before that migration was applied: revert what the failed apply did, or finish the failed
undo. As a hint, the report of each repaired version carries a warning in ``error`` when the content
checksum differs from the one recorded before that migration was applied (expected to differ when data
was written since).
"""

from __future__ import annotations

import datetime as dt
import time

from wavegraph.migrations.history import REPAIRED, failed
from wavegraph.migrations.model import REPAIR_PREFIX, HistoryEntry, Migration, StepReport
from wavegraph.migrations.runner import current_user, version_arg
from wavegraph.migrations.target import Target


async def repair(target: Target, migrations: list[Migration], version: str | None = None) -> list[StepReport]:
    """Mark every failed version (or only ``version``) as repaired; one report per version repaired.

    Returns an empty list when nothing matches (nothing failed, or ``version`` is not failed).
    """
    key = None if version is None else version_arg(version)
    async with target.lock():
        history = await target.history()
        blocked = [e for e in failed(history) if key is None or e.key == key]
        if not blocked:
            return []
        t0 = time.perf_counter()
        checksum = await target.content_checksum(migrations)
        snapshot_ms = round((time.perf_counter() - t0) * 1000)
        rank = max(e.installed_rank for e in history)
        reports = []
        for entry in blocked:
            rank += 1
            await target.record(_repair_entry(target, entry, rank, checksum))
            expected = _before_apply(history, entry)
            warning = None
            if expected is not None and expected != checksum:
                warning = (
                    f"content checksum {checksum[:12]} differs from {expected[:12]} recorded before version "
                    f"{entry.version} was applied: make sure the database is as it was before that migration"
                )
            reports.append(
                StepReport(
                    target.db,
                    entry.version,
                    entry.script,
                    "repair",
                    True,
                    0,
                    checksum,
                    checksum,
                    snapshot_ms,
                    error=warning,
                )
            )
        return reports


def _repair_entry(target: Target, failed_entry: HistoryEntry, rank: int, checksum: str) -> HistoryEntry:
    return HistoryEntry(
        installed_rank=rank,
        version=failed_entry.version,
        description=failed_entry.description,
        type=REPAIR_PREFIX + target.history_type,
        script=failed_entry.script,
        checksum=failed_entry.checksum,
        installed_by=current_user(),
        installed_on=dt.datetime.now(dt.UTC),
        execution_ms=0,
        success=True,
        state=REPAIRED,
        before_checksum=checksum,
        after_checksum=checksum,
    )


def _before_apply(history: list[HistoryEntry], failed_entry: HistoryEntry) -> str | None:
    """The content checksum from just before the failed migration was applied."""
    if failed_entry.is_apply:
        return failed_entry.before_checksum
    earlier = [e for e in history if e.installed_rank < failed_entry.installed_rank]
    for e in reversed(earlier):
        if e.key == failed_entry.key and e.is_apply and e.success:
            return e.before_checksum
    return None
