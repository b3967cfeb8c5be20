"""The PostgreSQL target: table ``wavegraph_schema_history``, transactional DDL, a content checksum.

A migration runs in one transaction (unless its ``<script>.conf`` says ``executeInTransaction=false``),
together with its post-checks and its history row, so a failure leaves nothing behind; the ``U``
script is then only needed for non-transactional scripts and for ``rollback``.

The content checksum covers the tables the migrations create (``CREATE TABLE`` in any ``V`` script):
for each, its columns (name, type with modifiers, nullability, default), indexes and constraints, and
its rows (md5 of each row's text, sorted, hashed server-side so only digests cross the wire), plus the
installed extensions. The history table is left out.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import asyncpg

from wavegraph.migrations.canonical import canonical, sorted_sections
from wavegraph.migrations.model import Db, HistoryEntry, Migration
from wavegraph.settings import PostgresSettings

HISTORY_TABLE = "wavegraph_schema_history"
LOCK_KEY = 0x5761_7665_6772  # "Wavegr": the advisory lock held while migrating

_CREATE_TABLE = re.compile(
    r"\bCREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?((?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+))?)",
    re.IGNORECASE,
)

_HISTORY_DDL = f"""
CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    installed_rank integer PRIMARY KEY,
    version text NOT NULL,
    description text NOT NULL,
    type text NOT NULL,
    script text NOT NULL,
    checksum text NOT NULL,
    installed_by text NOT NULL,
    installed_on timestamptz NOT NULL,
    execution_ms integer NOT NULL,
    success boolean NOT NULL,
    state text NOT NULL,
    before_checksum text NOT NULL,
    after_checksum text NOT NULL,
    error text
)"""

_USERINFO_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)

_COLUMNS = """
SELECT attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(adbin, adrelid)
FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
"""
_INDEXES = "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1::regclass"
_CONSTRAINTS = "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass"
_ROWS = (
    "SELECT count(*), encode(sha256(convert_to(coalesce(string_agg(h, ',' ORDER BY h), ''), 'UTF8')), 'hex') "
    "FROM (SELECT md5(t::text) AS h FROM {table} t) s"
)


def redact(url: str) -> str:
    """``url`` with any password (``user:secret@`` or ``password=secret``) replaced by ``***``."""
    return _PASSWORD_PARAM.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1***@", url))


def migrated_tables(migrations: list[Migration]) -> list[str]:
    """Names in ``CREATE TABLE`` statements of the ``V`` scripts, in order of first appearance."""
    seen: dict[str, None] = {}
    for m in migrations:
        for statement in m.statements:
            for match in _CREATE_TABLE.finditer(statement):
                seen.setdefault(match.group(1), None)
    return list(seen)


class PostgresSession:
    def __init__(self, conn: asyncpg.Connection, atomic: bool) -> None:
        self.conn = conn
        self.atomic = atomic

    async def run(self, statement: str) -> None:
        await self.conn.execute(statement)

    async def value(self, query: str) -> Any:
        return await self.conn.fetchval(query)

    async def values(self, query: str) -> list[Any]:
        return [row[0] for row in await self.conn.fetch(query)]


class PostgresTarget:
    db: Db = "postgres"
    history_type = "SQL"

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._conn: asyncpg.Connection | None = None

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("PostgresTarget used outside 'async with'")
        return self._conn

    @property
    def where(self) -> str:
        return redact(self.settings.url)

    async def __aenter__(self) -> PostgresTarget:
        self._conn = await asyncpg.connect(self.settings.url, timeout=10)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def history(self) -> list[HistoryEntry]:
        if await self.conn.fetchval("SELECT to_regclass($1)", HISTORY_TABLE) is None:
            return []
        rows = await self.conn.fetch(f"SELECT * FROM {HISTORY_TABLE} ORDER BY installed_rank")
        return [HistoryEntry(**dict(row)) for row in rows]

    async def record(self, entry: HistoryEntry) -> None:
        await self.conn.execute(_HISTORY_DDL)
        data = entry.__dict__
        columns = ", ".join(data)
        params = ", ".join(f"${i}" for i in range(1, len(data) + 1))
        await self.conn.execute(f"INSERT INTO {HISTORY_TABLE} ({columns}) VALUES ({params})", *data.values())

    async def content_checksum(self, migrations: list[Migration]) -> str:
        sections: dict[str, list[str]] = {"extensions": [], "tables": []}
        for name, version in await self.conn.fetch("SELECT extname, extversion FROM pg_extension"):
            sections["extensions"].append(f"{name} {version}")
        for table in migrated_tables(migrations):
            regclass = await self.conn.fetchval("SELECT to_regclass($1)::text", table)
            if regclass is None:
                continue
            columns = [list(r) for r in await self.conn.fetch(_COLUMNS, regclass)]
            indexes = [r[0] for r in await self.conn.fetch(_INDEXES, regclass)]
            constraints = [list(r) for r in await self.conn.fetch(_CONSTRAINTS, regclass)]
            count, rows = await self.conn.fetchrow(_ROWS.format(table=regclass))
            shape = {
                "columns": sorted(columns),
                "indexes": sorted(indexes),
                "constraints": sorted(constraints),
            }
            sections["tables"].append(f"{regclass} {canonical(shape).decode()} rows={count}:{rows}")
        return sorted_sections(sections)

    @contextlib.asynccontextmanager
    async def session(self, atomic: bool) -> AsyncIterator[PostgresSession]:
        if not atomic:
            yield PostgresSession(self.conn, False)
            return
        async with self.conn.transaction():
            yield PostgresSession(self.conn, True)

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        await self.conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            yield
        finally:
            await self.conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
