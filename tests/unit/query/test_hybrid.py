"""Argument checks of HybridSearch: every bad request fails before any store is touched."""

from __future__ import annotations

from typing import Any

import pytest

from wavegraph.query.hybrid import HybridSearch, SearchHit
from wavegraph.settings import Settings


class _NoStore:
    """Any attribute access fails the test: validation must not reach a store."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a store was touched ({name}) before the arguments were checked")


@pytest.fixture
def search() -> HybridSearch:
    return HybridSearch(Settings(), _NoStore(), _NoStore())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of q"),
        ({"text": "a", "vector": [1.0]}, "exactly one of q"),
        ({"text": " "}, "non-empty"),
        ({"text": "a", "mode": "fuzzy"}, "mode must be one of hybrid, semantic, lexical"),
        ({"text": "a", "kind": "edge"}, "kind must be one of transcript, node"),
        ({"text": "a", "k": 0}, r"k must be an integer in 1\.\.100"),
        ({"text": "a", "k": 101}, r"k must be an integer in 1\.\.100"),
        ({"text": "a", "k": True}, "k must be an integer"),
        ({"vector": [1.0], "mode": "lexical"}, "lexical mode needs q"),
        ({"text": "a", "filters": ["stream_id"]}, "filters must be a JSON object"),
        ({"text": "a", "filters": {"speaker": "x"}}, "unknown filter 'speaker'"),
        ({"text": "a", "filters": {"window": True}}, "filter 'window' must be a int"),
        ({"text": "a", "kind": "node", "filters": {"window": 1}}, "kind=transcript only"),
    ],
)
async def test_bad_arguments_raise_value_error(
    search: HybridSearch, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await search.search("acme", **kwargs)


def test_hits_render_the_fields_of_their_kind() -> None:
    seg = SearchHit(
        "s:1:0", "transcript", 0.5, "lexical", stream_id="s", window=1, start_s=0.0, end_s=2.0, text="hi"
    )
    assert seg.to_json() == {
        "id": "s:1:0",
        "kind": "transcript",
        "score": 0.5,
        "source": "lexical",
        "sources": ["lexical"],
        "stream_id": "s",
        "window": 1,
        "start_s": 0.0,
        "end_s": 2.0,
        "text": "hi",
    }
    node = SearchHit("n1", "node", 0.1, "pgvector", ("pgvector", "lexical"), node="n1", pagerank=0.25)
    assert node.to_json() == {
        "id": "n1",
        "kind": "node",
        "score": 0.1,
        "source": "pgvector",
        "sources": ["pgvector", "lexical"],
        "node": "n1",
        "pagerank": 0.25,
    }
