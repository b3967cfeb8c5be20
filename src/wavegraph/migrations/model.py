"""The value types of the migration runner: versions, migration files, post-checks, history entries."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Db = Literal["neo4j", "postgres"]
DBS: tuple[Db, ...] = ("neo4j", "postgres")
SUFFIX: dict[Db, str] = {"neo4j": ".cypher", "postgres": ".sql"}
UNDO_PREFIX = "UNDO_"
REPAIR_PREFIX = "REPAIR_"

FILE_NAME = re.compile(
    r"^(?P<prefix>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<description>[^.]+)(?P<suffix>\.\w+)$"
)


def version_key(text: str) -> tuple[int, ...]:
    """Flyway ordering: ``2025.07`` == ``2025_7`` == ``2025.7.0``; compared part by part as integers."""
    parts = [int(p) for p in re.split(r"[._]", text)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class Check:
    """A post-check: ``query`` returns one value (first column of the first row) that must equal
    ``expect``, or, when ``expect == "unchanged"``, the value the same query returned before the migration."""

    name: str
    query: str
    expect: Any


@dataclass(frozen=True)
class CheckResult:
    name: str
    value: Any
    expected: Any
    ok: bool


@dataclass(frozen=True)
class Migration:
    """One versioned migration file ``V<version>__<description>.<suffix>`` and its companions."""

    db: Db
    version: str
    description: str
    path: Path
    checksum: str
    statements: tuple[str, ...]
    undo_path: Path | None = None
    undo_statements: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    in_transaction: bool = True

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)

    @property
    def script(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class HistoryEntry:
    """One row of the history kept in the target database (Flyway's columns plus the snapshots)."""

    installed_rank: int
    version: str
    description: str
    type: str
    """``CYPHER``/``SQL`` for an apply, ``UNDO_CYPHER``/``UNDO_SQL`` for an undo, ``REPAIR_CYPHER``/
    ``REPAIR_SQL`` for a ``migrate repair`` (see :mod:`.repair`)."""
    script: str
    checksum: str
    installed_by: str
    installed_on: dt.datetime
    execution_ms: int
    success: bool
    state: str
    """``success``; ``undone``; ``repaired``; ``rolled back`` (an apply or undo that failed and changed
    nothing: the version keeps the state it had before); ``failed`` (an apply or undo that failed and left
    the content changed or unknown: nothing runs on the target until ``migrate repair``)."""
    before_checksum: str
    after_checksum: str
    error: str | None = None

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)

    @property
    def is_undo(self) -> bool:
        return self.type.startswith(UNDO_PREFIX)

    @property
    def is_repair(self) -> bool:
        return self.type.startswith(REPAIR_PREFIX)

    @property
    def is_apply(self) -> bool:
        return not (self.is_undo or self.is_repair)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["installed_on"] = self.installed_on.isoformat()
        return data


@dataclass
class StepReport:
    """What one apply or undo of one migration did, for the CLI and the JSON output."""

    db: Db
    version: str
    script: str
    action: Literal["apply", "undo", "repair"]
    ok: bool
    execution_ms: int
    before_checksum: str
    after_checksum: str
    snapshot_ms: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
