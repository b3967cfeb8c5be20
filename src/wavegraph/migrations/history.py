"""Reading the history: which versions are applied, each file's state, and what validation finds."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from wavegraph.migrations.model import HistoryEntry, Migration


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


def applied(history: list[HistoryEntry]) -> dict[tuple[int, ...], HistoryEntry]:
    """Versions currently applied: their last entry is a successful apply."""
    return {k: e for k, e in latest(history).items() if not e.is_undo and e.success}


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
        if e.is_undo:
            state = "undone"
        elif not e.success:
            state = e.state
        elif m is None:
            state = "missing"
        elif m.checksum != e.checksum:
            state = "changed"
        else:
            state = "success"
        rows.append(
            InfoRow(
                db,
                e.version,
                e.description,
                e.script,
                e.checksum,
                e.installed_on,
                state,
                e.before_checksum,
                e.after_checksum,
            )
        )
    return rows


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
