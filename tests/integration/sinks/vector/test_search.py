"""The search API against the real PostgreSQL: pgvector when FAISS is not loaded, FAISS (same top hits)
once it is, rebuilds only when PostgreSQL changed, FAISS hits checked against PostgreSQL, text queries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from wavegraph import metrics
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.query.search import Hit, SearchService
from wavegraph.settings import Settings
from wavegraph.sinks.pgvector import PgVectorStore, VectorRecord
from wavegraph.sinks.vectors import InvalidVector

pytestmark = pytest.mark.services

SENTENCES = {
    "cat": "The cat slept on the warm windowsill in the afternoon sun.",
    "stocks": "Stock markets fell sharply after the central bank raised interest rates.",
    "bread": "Knead the dough with flour, water and a pinch of salt before baking the bread.",
    "football": "The football team won the championship with a goal in extra time.",
    "flood": "Heavy rain flooded the valley and the river burst its banks.",
    "phone": "The new smartphone has a faster processor and a sharper camera.",
}


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder()


def faiss_settings(settings: Settings, index_dir: Path) -> Settings:
    vector = settings.vector.model_copy(update={"backend": "faiss", "index_dir": index_dir})
    return settings.model_copy(update={"vector": vector})


@pytest.fixture
async def loaded(table_store: PgVectorStore, tenant: str) -> AsyncIterator[np.ndarray]:
    """400 vectors for ``tenant`` and 100 for another tenant in the private table."""
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((500, 384)).astype(np.float32)
    recs = [
        VectorRecord(tenant if i < 400 else f"{tenant}x", "doc", f"d{i}", v, f"text {i}", {"odd": i % 2})
        for i, v in enumerate(vecs)
    ]
    await table_store.bulk_load(recs)
    yield vecs


@pytest.fixture
async def service(table_store: PgVectorStore, tmp_path: Path) -> AsyncIterator[SearchService]:
    svc = await SearchService.open(faiss_settings(table_store.settings, tmp_path / "faiss"), table_store)
    yield svc
    await svc.close()


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def count(backend: str) -> float:
    return metrics.REGISTRY.get_sample_value("wavegraph_search_query_ms_count", {"backend": backend}) or 0.0


async def test_pgvector_answers_until_faiss_is_loaded(
    service: SearchService, loaded: np.ndarray, tenant: str
) -> None:
    no_index = SearchService(service.settings, service.store, None)
    before = count("pgvector")
    hits = await no_index.search(tenant, loaded[3], k=5)
    assert ids(hits)[0] == "d3" and {h.source for h in hits} == {"pgvector"}
    assert hits[0].score == pytest.approx(1.0, abs=1e-5) and hits[0].text == "text 3"
    assert count("pgvector") == before + 1

    assert service.index is not None and not service.faiss_ready  # opened, not started
    assert {h.source for h in await service.search(tenant, loaded[3], k=5)} == {"pgvector"}


async def test_faiss_once_loaded_gives_the_same_top_hits(
    service: SearchService, loaded: np.ndarray, tenant: str
) -> None:
    await service.start()
    assert service.faiss_ready and service.backend == "faiss"
    assert service.index is not None and len(service.index) == 500
    no_index = SearchService(service.settings, service.store, None)
    before = count("faiss")
    for q in loaded[::25]:
        via_faiss = await service.search(tenant, q, k=5)
        via_pg = await no_index.search(tenant, q, k=5)
        assert {h.source for h in via_faiss} == {"faiss"}
        assert ids(via_faiss) == ids(via_pg)
        assert [h.score for h in via_faiss] == pytest.approx([h.score for h in via_pg], abs=2e-3)
        assert all(int(h.id[1:]) < 400 for h in via_faiss)  # never the other tenant
        assert via_faiss[0].text == via_pg[0].text and via_faiss[0].metadata == via_pg[0].metadata
    assert count("faiss") == before + 20
    odd = await service.search(tenant, loaded[0], k=5, filters={"odd": 1})
    assert len(odd) == 5 and all(h.metadata == {"odd": 1} for h in odd)
    assert {h.source for h in odd} == {"faiss"}


async def test_background_start_and_close(service: SearchService, loaded: np.ndarray, tenant: str) -> None:
    await service.start(wait=False)
    assert await service.wait_ready() is True
    assert (await service.search(tenant, loaded[0], k=1))[0].source == "faiss"
    await service.refresh(force=True)

    await service.start(wait=False)  # nothing to do, then closed at once
    await service.close()
    await service.close()
    assert not service.faiss_ready
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_rebuilds_only_when_postgres_changed(
    service: SearchService, loaded: np.ndarray, tenant: str, tmp_path: Path
) -> None:
    assert await service.refresh() is True  # nothing saved yet
    assert await service.refresh() is False
    await service.store.upsert([VectorRecord(tenant, "doc", "d0", loaded[1], "moved")])
    assert await service.refresh() is True
    await service.close()

    again = await SearchService.open(service.settings, service.store)  # the saved index, loaded
    try:
        assert await again.refresh() is False and again.faiss_ready
        assert len(again.index or []) == 500
        await service.store.delete(tenant, "doc", ["d5"])
        assert await again.refresh() is True
        assert len(again.index or []) == 499
    finally:
        await again.close()


async def test_faiss_hits_deleted_in_postgres_never_surface(
    service: SearchService, loaded: np.ndarray, tenant: str
) -> None:
    await service.start()
    await service.store.delete(tenant, "doc", ["d7"])  # FAISS still has it
    hits = await service.search(tenant, loaded[7], k=5)
    assert "d7" not in ids(hits) and len(hits) == 5
    assert {h.source for h in hits} == {"pgvector"}  # FAISS had only 4 left: answered exactly


async def test_bad_queries_get_clear_errors(service: SearchService, tenant: str) -> None:
    with pytest.raises(InvalidVector, match="dimension 3, expected 384"):
        await service.search(tenant, [0.1, 0.2, 0.3])
    with pytest.raises(InvalidVector, match="NaN"):
        await service.search(tenant, np.full(384, np.nan))
    with pytest.raises(ValueError, match="exactly one of vector or text"):
        await service.search(tenant, np.ones(384), text="both")
    with pytest.raises(ValueError, match="k must be"):
        await service.search(tenant, np.ones(384), k=0)
    with pytest.raises(RuntimeError, match="embedder"):
        await service.search(tenant, text="no embedder given")


async def test_text_search_finds_the_nearest_sentence(
    service: SearchService, embedder: TextEmbedder, tenant: str
) -> None:
    keys = list(SENTENCES)
    vecs = embedder.embed([SENTENCES[key] for key in keys])
    await service.store.upsert(
        [VectorRecord(tenant, "segment", key, v, SENTENCES[key]) for key, v in zip(keys, vecs, strict=True)]
    )
    service.embedder = embedder
    queries = {
        "a kitten dozing by the window": "cat",
        "shares dropped when rates went up": "stocks",
        "how to bake a loaf": "bread",
        "my mobile's camera takes better pictures": "phone",
    }
    for text, expected in queries.items():
        hits = await service.search(tenant, text=text, k=3)
        assert hits[0].id == expected and hits[0].text == SENTENCES[expected], (text, hits)
    await service.start()
    hits = await service.search(tenant, text="the river overflowed after the storm", k=1, kind="segment")
    assert ids(hits) == ["flood"] and hits[0].source == "faiss"
