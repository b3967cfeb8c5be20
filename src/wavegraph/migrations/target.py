"""What the runner needs from a database: a history, a content checksum, and a way to run statements.

:class:`Target` is implemented by :mod:`.neo4j_target` and :mod:`.postgres_target`. A target opens its
connection in ``__aenter__`` and closes it in ``__aexit__``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol

from wavegraph.migrations.model import Db, HistoryEntry, Migration


class Session(Protocol):
    """Statements run through a session; ``atomic`` sessions commit or roll back as one transaction."""

    atomic: bool

    async def run(self, statement: str) -> None: ...

    async def value(self, query: str) -> Any:
        """The first column of the first row of ``query`` (None when it returns no row)."""
        ...

    async def values(self, query: str) -> list[Any]:
        """The first column of every row of ``query``."""
        ...


class Target(Protocol):
    db: Db
    history_type: str
    """``CYPHER`` or ``SQL``: the history ``type`` of an apply (``UNDO_``/``REPAIR_`` + it otherwise)."""

    @property
    def where(self) -> str:
        """Where the database is, for messages (a URI without its password)."""
        ...

    async def __aenter__(self) -> Target: ...

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def history(self) -> list[HistoryEntry]:
        """Every history entry, oldest first (empty when the history does not exist yet)."""
        ...

    async def record(self, entry: HistoryEntry) -> None:
        """Append ``entry`` (inside the open atomic session, if any)."""
        ...

    async def content_checksum(self, migrations: list[Migration]) -> str:
        """sha256 of a sorted export of the content (data and schema), history excluded."""
        ...

    def session(self, atomic: bool) -> contextlib.AbstractAsyncContextManager[Session]:
        """A session; ``atomic`` is honoured where the database can (PostgreSQL), ignored elsewhere."""
        ...

    def lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while migrations are applied or undone, so two runners never interleave."""
        ...


@contextlib.asynccontextmanager
async def no_lock() -> AsyncIterator[None]:
    yield
