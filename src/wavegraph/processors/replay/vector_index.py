"""The FAISS index of a replay: opening it and checksumming a tenant's rows.

The FAISS index (:mod:`wavegraph.sinks.faiss`) is derived from PostgreSQL's ``embeddings`` table, not
from a topic: :meth:`~wavegraph.query.search.SearchService.refresh` rebuilds it from every row (one
repeatable-read snapshot, in a seeded random order) and writes the source stamp beside it. ``wavegraph
replay --target faiss`` runs that same refresh, forced (in :mod:`wavegraph.commands.replay`: the read
side's service is not a processor's to import), on ``vector.index_dir`` or a temporary directory, so
after ``--target postgres`` the index follows the rebuilt tables. The index holds every tenant; the
rebuild is always whole, the checksums are per tenant.

An API process that has the index open keeps searching its own (memory-mapped) generation until it next
refreshes or restarts; the rebuild never changes what it has loaded.

Checksum: the tenant's live rows ``(kind, id, vector)`` sorted by kind and id, vectors (float16 in the
index) through :func:`~wavegraph.processors.replay.checksum.quantize`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from pathlib import Path

import orjson

from wavegraph.processors.replay.checksum import StoreChecksum, quantize
from wavegraph.settings import Settings
from wavegraph.sinks.faiss import HybridIndex, HybridParams, Row

__all__ = ["index_checksums", "open_index", "rows_checksum", "saved_index_checksums"]


async def open_index(settings: Settings, directory: Path | None = None) -> HybridIndex:
    """The index saved in ``directory`` (default ``vector.index_dir``), or an empty one there."""
    path = Path(directory or settings.vector.index_dir)
    params = HybridParams.from_settings(settings.vector)
    return await asyncio.to_thread(HybridIndex.open, path, params)


def rows_checksum(rows: Iterable[Row], tenant: str) -> StoreChecksum:
    """The checksum of ``tenant``'s rows among ``rows`` (see the module docstring)."""
    mine = sorted(((kind, key, vec) for t, kind, key, vec in rows if t == tenant), key=lambda r: r[:2])
    digest = hashlib.sha256(b"rows")
    digest.update(orjson.dumps([[kind, key, quantize(vec)] for kind, key, vec in mine]))
    return StoreChecksum("faiss", tenant, {"rows": len(mine)}, digest.hexdigest())


async def index_checksums(
    index: HybridIndex, tenants: Iterable[str] | None = None
) -> dict[str, StoreChecksum]:
    """Per tenant (``tenants``, default every tenant in the index), the checksum of its rows."""

    def compute() -> dict[str, StoreChecksum]:
        by: dict[str, list[Row]] = {}
        for row in index.rows():
            by.setdefault(row[0], []).append(row)
        names = sorted(set(tenants) if tenants is not None else set(by))
        return {t: rows_checksum(by.get(t, []), t) for t in names}

    return await asyncio.to_thread(compute)


async def saved_index_checksums(
    settings: Settings, tenants: Iterable[str] | None = None
) -> dict[str, StoreChecksum]:
    """:func:`index_checksums` of the index saved in ``vector.index_dir``, loaded read-only (nothing is
    created there when it holds none: every tenant asked for then has the empty checksum)."""
    path = Path(settings.vector.index_dir)
    if not (path / "manifest.json").exists():
        return {t: rows_checksum([], t) for t in sorted(set(tenants or ()))}
    index = await open_index(settings, path)
    try:
        return await index_checksums(index, tenants)
    finally:
        await asyncio.to_thread(index.close)
