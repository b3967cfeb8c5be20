"""The Neo4j target: history nodes ``(:__WavegraphMigration)``, auto-commit statements, a content checksum.

Neo4j cannot mix schema and data changes in one transaction, and ``CALL { … } IN TRANSACTIONS`` needs
an auto-commit transaction, so every statement runs in its own auto-commit transaction and a failed
migration is undone by its ``U`` script (see :mod:`.runner`).
The content checksum is :func:`.graph_snapshot.graph_checksum`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, LiteralString, cast

from neo4j import AsyncDriver

from wavegraph.clients import neo4j_driver
from wavegraph.migrations.graph_snapshot import HISTORY_LABEL, graph_checksum
from wavegraph.migrations.model import Db, HistoryEntry, Migration
from wavegraph.migrations.target import no_lock
from wavegraph.settings import Neo4jSettings


def q(text: str) -> LiteralString:
    """Migration scripts are trusted project files: let them through the driver's LiteralString typing."""
    return cast(LiteralString, text)


class Neo4jSession:
    atomic = False

    def __init__(self, driver: AsyncDriver, database: str | None) -> None:
        self.driver = driver
        self.database = database

    async def run(self, statement: str) -> None:
        async with self.driver.session(database=self.database) as session:
            result = await session.run(q(statement))
            await result.consume()

    async def value(self, query: str) -> Any:
        async with self.driver.session(database=self.database) as session:
            result = await session.run(q(query))
            rows = await result.fetch(1)
            await result.consume()
        return rows[0][0] if rows else None

    async def values(self, query: str) -> list[Any]:
        async with self.driver.session(database=self.database) as session:
            result = await session.run(q(query))
            return [record[0] async for record in result]


class Neo4jTarget:
    db: Db = "neo4j"
    history_type = "CYPHER"

    def __init__(self, settings: Neo4jSettings, database: str | None = None) -> None:
        self.settings = settings
        self.database = database
        self._driver: AsyncDriver | None = None

    @property
    def driver(self) -> AsyncDriver:
        if self._driver is None:
            raise RuntimeError("Neo4jTarget used outside 'async with'")
        return self._driver

    @property
    def where(self) -> str:
        return self.settings.uri

    async def __aenter__(self) -> Neo4jTarget:
        self._driver = neo4j_driver(self.settings, retries=True)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._driver is not None:
            await self._driver.close()
            self._driver = None

    async def history(self) -> list[HistoryEntry]:
        records, _, _ = await self.driver.execute_query(
            f"MATCH (m:{HISTORY_LABEL}) RETURN properties(m) AS p ORDER BY m.installed_rank",
            database_=self.database,
        )
        entries = []
        for record in records:
            p = dict(record["p"])
            p["installed_on"] = p["installed_on"].to_native()
            entries.append(HistoryEntry(**p))
        return entries

    async def record(self, entry: HistoryEntry) -> None:
        props = {k: v for k, v in entry.__dict__.items() if v is not None}
        props["installed_on"] = entry.installed_on.astimezone(dt.UTC)
        await self.driver.execute_query(
            f"CREATE (m:{HISTORY_LABEL}) SET m = $props", props=props, database_=self.database
        )

    async def content_checksum(self, migrations: list[Migration]) -> str:
        return await graph_checksum(self.driver, self.database)

    @contextlib.asynccontextmanager
    async def session(self, atomic: bool) -> AsyncIterator[Neo4jSession]:
        yield Neo4jSession(self.driver, self.database)

    def lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        # Neo4j Community has no advisory locks; runs are serialised by the operator (documented).
        return no_lock()
