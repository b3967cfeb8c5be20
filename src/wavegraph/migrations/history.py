"""Reading the history: which versions are applied, each file's state, and what validation finds.

The history is append-only. A version's state is decided by its entries, newest first, skipping those in
state ``rolled back`` (a failed apply or undo that changed nothing): the first one left is a successful
apply (applied), an undo (``undone``: not applied), a repair (``repaired``: not applied, the next apply
runs it again) or a ``failed`` entry, which blocks the target (:func:`failed`) until ``migrate repair``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from wavegraph.migrations.model import HistoryEntry, Migration

FAILED = "failed"
ROLLED_BACK = "rolled back"
REPAIRED = "repaired"


@dataclass(frozen=True)
class InfoRow:
    db: str
    version: str
    description: str
    script: str
    checksum: str
    installed_on: dt.datetime | None
    state: str
    before_checksum: str | None = None
    after_checksum: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["installed_on"] = self.installed_on.isoformat() if self.installed_on else None
        return data


def latest(history: list[HistoryEntry]) -> dict[tuple[int, ...], HistoryEntry]:
    """The last history entry of each version."""
    out: dict[tuple[int, ...], HistoryEntry] = {}
    for entry in history:
        out[entry.key] = entry
    return out


def effective(history: list[HistoryEntry]) -> dict[tuple[int, ...], HistoryEntry]:
    """The last entry of each version that changed something (entries in state ``rolled back`` did not)."""
    return latest([e for e in history if e.state != ROLLED_BACK])


def applied(history: list[HistoryEntry]) -> dict[tuple[int, ...], HistoryEntry]:
    """Versions currently applied: their last effective entry is a successful apply."""
    return {k: e for k, e in effective(history).items() if e.is_apply and e.success}


def failed(history: list[HistoryEntry]) -> list[HistoryEntry]:
    """Versions whose last entry is ``failed`` and not repaired since, oldest first."""
    return sorted((e for e in latest(history).values() if e.state == FAILED), key=lambda e: e.installed_rank)


def info_rows(db: str, migrations: list[Migration], history: list[HistoryEntry]) -> list[InfoRow]:
    files = {m.key: m for m in migrations}
    last = latest(history)
    rows = []
    for key in sorted(files.keys() | last.keys()):
        m, e = files.get(key), last.get(key)
        if e is None:
            assert m is not None
            rows.append(InfoRow(db, m.version, m.description, m.script, m.checksum, None, "pending"))
            continue
        rows.append(
            InfoRow(
                db,
                e.version,
                e.description,
                e.script,
                e.checksum,
                e.installed_on,
                _state(e, m),
                e.before_checksum,
                e.after_checksum,
                e.error,
            )
        )
    return rows


def _state(e: HistoryEntry, m: Migration | None) -> str:
    if e.is_repair:
        return REPAIRED
    if e.is_undo:
        if e.success:
            return "undone"
        return FAILED if e.state == FAILED else "undo rolled back"  # the latter: still applied
    if not e.success:
        return e.state
    if m is None:
        return "missing"
    return "changed" if m.checksum != e.checksum else "success"


def problems(migrations: list[Migration], history: list[HistoryEntry]) -> list[str]:
    """Applied migrations whose file was edited or deleted since, each named by its file."""
    files = {m.key: m for m in migrations}
    out = []
    for key, e in applied(history).items():
        m = files.get(key)
        if m is None:
            out.append(f"{e.script}: applied on {e.installed_on:%Y-%m-%d %H:%M} but the file is gone")
        elif m.checksum != e.checksum:
            out.append(
                f"{m.path}: checksum {m.checksum[:12]} differs from {e.checksum[:12]} recorded when it was "
                f"applied on {e.installed_on:%Y-%m-%d %H:%M} (the file was edited after it was applied)"
            )
    return out
