"""The LMDB query-embedding cache on real LMDB files in a temporary folder.

The wrapped embedder is a small deterministic one of this test (the MiniLM model is not needed to test
the cache); it counts the texts it is asked to embed."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from wavegraph.query.embedding_cache import LMDB_EVICTIONS, PAYLOAD_SHARE, EmbeddingCache

MIB = 1024 * 1024


class HashEmbedder:
    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.asked: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.extend(texts)
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32))
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)


def test_a_second_lookup_is_served_from_the_cache(tmp_path: Path) -> None:
    inner = HashEmbedder()
    cache = EmbeddingCache(inner, tmp_path / "emb", 8 * MIB)
    first = cache.embed(["kafka", "neo4j", "kafka"])
    second = cache.embed(["neo4j", "kafka"])
    assert first.dtype == np.float32 and first.shape == (3, 384)
    np.testing.assert_array_equal(first, inner.embed(["kafka", "neo4j", "kafka"]))
    np.testing.assert_array_equal(second, first[[1, 0]])
    assert inner.asked[:2] == ["kafka", "neo4j"]  # each distinct text embedded once, then never again
    assert len(inner.asked) == 2 + 3
    assert (cache.hits, cache.misses) == (2, 3)
    assert cache.hit_ratio == pytest.approx(0.4)
    cache.close()


def test_entries_survive_a_restart(tmp_path: Path) -> None:
    cache = EmbeddingCache(HashEmbedder(), tmp_path / "emb", 8 * MIB)
    before = cache.embed(["persisted"])
    cache.close()
    inner = HashEmbedder()
    again = EmbeddingCache(inner, tmp_path / "emb", 8 * MIB)
    np.testing.assert_array_equal(again.embed(["persisted"]), before)
    assert inner.asked == []
    again.close()


def test_least_recently_used_entries_are_evicted_within_the_byte_bound(tmp_path: Path) -> None:
    cache = EmbeddingCache(HashEmbedder(), tmp_path / "emb", MIB)
    evicted_before = LMDB_EVICTIONS._value.get()
    cache.embed(["hot"])
    for i in range(600):  # ~940 kB of payload for a 419 kB budget
        cache.embed([f"cold {i}", "hot"])
    assert cache.evictions > 0
    assert LMDB_EVICTIONS._value.get() - evicted_before == cache.evictions
    assert cache.stored_bytes() <= MIB * PAYLOAD_SHARE
    inner = HashEmbedder()
    cache.inner = inner
    cache.embed(["hot", "cold 599", "cold 0"])
    assert inner.asked == ["cold 0"]  # the oldest cold entry went first; the hot one was renewed
    cache.close()


def test_other_namespaces_do_not_share_vectors(tmp_path: Path) -> None:
    a = EmbeddingCache(HashEmbedder(), tmp_path / "emb", 8 * MIB, namespace="model-a")
    a.embed(["same text"])
    a.close()
    inner = HashEmbedder()
    b = EmbeddingCache(inner, tmp_path / "emb", 8 * MIB, namespace="model-b")
    b.embed(["same text"])
    assert inner.asked == ["same text"]
    b.close()


def test_a_corrupt_environment_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "emb"
    cache = EmbeddingCache(HashEmbedder(), path, 8 * MIB)
    cache.embed(["x"])
    cache.close()
    (path / "data.mdb").write_bytes(b"this is not an LMDB file" * 1000)
    inner = HashEmbedder()
    with caplog.at_level(logging.WARNING, logger="wavegraph.query.embedding_cache"):
        rebuilt = EmbeddingCache(inner, path, 8 * MIB)
    assert "rebuilt empty" in caplog.text
    out = rebuilt.embed(["x", "y"])
    np.testing.assert_array_equal(out, HashEmbedder().embed(["x", "y"]))
    assert inner.asked == ["x", "y"]
    assert len(rebuilt) == 2
    rebuilt.close()


def test_a_full_map_never_fails_a_query(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inner = HashEmbedder(dim=200_000)  # 800 kB a vector in a 1 MiB map
    cache = EmbeddingCache(inner, tmp_path / "emb", MIB)
    with caplog.at_level(logging.WARNING, logger="wavegraph.query.embedding_cache"):
        for text in ["a", "b", "c", "a"]:
            np.testing.assert_array_equal(cache.embed([text]), HashEmbedder(dim=200_000).embed([text]))
    assert cache.stored_bytes() <= MIB * PAYLOAD_SHARE
    cache.close()


def test_an_unusable_path_means_no_cache_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    inner = HashEmbedder()
    cache = EmbeddingCache(inner, blocker / "emb", 8 * MIB)
    out = cache.embed(["q", "q"])
    np.testing.assert_array_equal(out[0], out[1])
    assert len(cache) == 0
