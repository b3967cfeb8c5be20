"""The FAISS hybrid index: recall against exact search, tenant isolation, deletes, persistence, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wavegraph.bench.ann import synthetic_clustered
from wavegraph.errors import WavegraphError
from wavegraph.settings import VectorSettings
from wavegraph.sinks.faiss_index import Hit, HybridIndex, HybridParams, IndexCorrupt, InvalidVector, Row

faiss = pytest.importorskip("faiss")

N = 20_000
NQ = 200


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = synthetic_clustered(N + NQ, seed=7)
    return x[:N], x[N:]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, np.ndarray]) -> HybridIndex:
    xb, _ = data
    index = HybridIndex(tmp_path_factory.mktemp("big") / "idx", HybridParams.from_settings(VectorSettings()))
    index.add_batch("acme", "doc", [f"d{i}" for i in range(N)], xb)
    return index


def _small(path: Path, **overrides: Any) -> HybridIndex:
    params: dict[str, Any] = {"min_train": 1000, "train_size": 4000, "exact_below": 50, **overrides}
    return HybridIndex(path, HybridParams(**params))


def _ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def test_recall_at_10_against_exact_search(big: HybridIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    assert big.trained and len(big) == N
    exact = faiss.IndexFlatIP(xb.shape[1])
    exact.add(xb)
    _, truth = exact.search(xq, 10)
    results = big.search_batch("acme", xq, k=10)
    recall = np.mean(
        [
            len({int(h.id[1:]) for h in hits} & set(t.tolist())) / 10
            for hits, t in zip(results, truth, strict=True)
        ]
    )
    assert recall >= 0.95, recall
    hits = results[0]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score == pytest.approx(float(xq[0] @ xb[int(hits[0].id[1:])]), abs=2e-3)
    assert big.search("acme", xq[0], k=10) == hits


@pytest.mark.parametrize("exact_below", [50, 100_000], ids=["hnsw-filter", "exact"])
def test_tenant_a_never_sees_tenant_b(
    tmp_path: Path, exact_below: int, data: tuple[np.ndarray, np.ndarray]
) -> None:
    xb, xq = data
    index = _small(tmp_path / "idx", exact_below=exact_below)
    index.add_batch("a", "doc", [f"a{i}" for i in range(1500)], xb[:1500])
    index.add_batch("a", "note", [f"n{i}" for i in range(300)], xb[1500:1800])
    # Tenant B holds the queries themselves: the best possible matches for every query.
    index.add_batch("b", "doc", [f"b{i}" for i in range(NQ)], xq)
    index.add_batch("b", "doc", [f"b{i}" for i in range(NQ, 2000)], xb[2000:3800])
    assert index.trained
    for hits in index.search_batch("a", xq[:50], k=20):
        assert len(hits) == 20 and all(h.tenant == "a" and h.id[0] in "an" for h in hits)
    for hits in index.search_batch("a", xq[:50], k=20, kind="note"):
        assert hits and all(h.kind == "note" and h.id.startswith("n") for h in hits)
    assert _ids(index.search("b", xq[3], k=1)) == ["b3"]
    assert index.search("nobody", xq[0]) == []
    assert index.search("a", xq[0], kind="nothing") == []
    assert index.count("a") == 1800 and index.count("a", "note") == 300 and index.count("b") == 2000


def test_delete_removes_and_upsert_replaces(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    index = _small(tmp_path / "idx")
    index.add_batch("a", "doc", [f"d{i}" for i in range(3000)], xb[:3000])
    index.add_batch("a", "doc", ["q"], xq[:1])
    assert _ids(index.search("a", xq[0], k=1)) == ["q"]
    assert index.delete("a", "doc", ["q", "missing"]) == 1
    assert "q" not in _ids(index.search("a", xq[0], k=50))
    assert ("a", "doc", "q") not in index and len(index) == 3000
    assert index.delete("a", "doc", ["q"]) == 0
    # Re-adding a key replaces its vector; the old row becomes a tombstone.
    index.add_batch("a", "doc", ["d5"], xq[1:2])
    assert _ids(index.search("a", xq[1], k=1)) == ["d5"]
    assert len(index) == 3000 and index.tombstone_fraction > 0
    before = index.search_batch("a", xq[:20], k=10)
    index.delete("a", "doc", [f"d{i}" for i in range(1000, 2000)])
    assert index.needs_compaction
    after = index.search_batch("a", xq[:20], k=10)
    assert all(not (1000 <= int(h.id[1:]) < 2000) for hits in after for h in hits if h.id[0] == "d")
    assert before != after
    index.compact()
    assert index.tombstone_fraction == 0 and len(index) == 2000
    compacted = index.search_batch("a", xq[:20], k=10)  # a new graph: near-identical, not identical
    overlap = [len(set(_ids(x)) & set(_ids(y))) / 10 for x, y in zip(after, compacted, strict=True)]
    assert np.mean(overlap) >= 0.9


def test_persist_and_load_give_identical_results(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    index = _small(tmp_path / "idx")
    index.add_batch("a", "doc", [f"d{i}" for i in range(2500)], xb[:2500])
    index.add_batch("b", "clip", [f"c{i}" for i in range(500)], xb[2500:3000])
    index.delete("a", "doc", ["d1", "d2"])
    index.save()
    expected = [index.search_batch(t, xq[:30], k=10) for t in ("a", "b")]
    index.add_batch("a", "doc", ["after-save"], xq[:1])  # not in the snapshot
    index.close()
    loaded = HybridIndex.load(tmp_path / "idx")
    assert loaded.trained and len(loaded) == 2998
    assert [loaded.search_batch(t, xq[:30], k=10) for t in ("a", "b")] == expected
    assert ("a", "doc", "d1") not in loaded and ("a", "doc", "d3") in loaded
    assert loaded.add([("a", "doc", "new", xq[0]), ("b", "clip", "new", xq[1])]) == 2
    assert _ids(loaded.search("a", xq[0], k=1)) == ["new"]
    assert _ids(loaded.search("b", xq[1], k=1)) == ["new"]
    reopened = HybridIndex.open(tmp_path / "idx")
    assert len(reopened) == 2998
    with pytest.raises(FileExistsError):
        HybridIndex(tmp_path / "idx")


def test_small_untrained_index_is_exact(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    index = HybridIndex(tmp_path / "idx")
    index.add_batch("a", "doc", [str(i) for i in range(500)], xb[:500])
    assert not index.trained
    truth = np.argsort(-(xq[:10] @ xb[:500].T), axis=1)[:, :5]
    got = [[int(h.id) for h in hits] for hits in index.search_batch("a", xq[:10], k=5)]
    assert got == truth.tolist()
    index.save()
    assert HybridIndex.load(tmp_path / "idx").search_batch("a", xq[:10], k=5) == index.search_batch(
        "a", xq[:10], k=5
    )


def test_rebuild_from_rows(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    index = _small(tmp_path / "idx")
    index.add_batch("a", "doc", ["old"], xq[:1])

    def rows() -> Iterator[Row]:
        for i in range(3000):
            yield ("a" if i % 3 else "b", "doc", f"r{i}", xb[i])

    assert index.rebuild(rows()) == 3000
    assert index.trained and ("a", "doc", "old") not in index
    assert index.count("a") == 2000 and index.count("b") == 1000
    hits = index.search("b", xb[3], k=1)
    assert _ids(hits) == ["r3"] and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "g1-s1.hnsw",
        "g1-s1.rows.npz",
        "g1.f16",
        "manifest.json",
    ]
    assert HybridIndex.load(tmp_path / "idx").search("b", xb[3], k=1) == hits


def test_bad_vectors_get_clear_errors(big: HybridIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    _, xq = data
    with pytest.raises(InvalidVector, match="dimension 384, got 383"):
        big.search("acme", xq[0][:383])
    nan = xq[0].copy()
    nan[7] = np.nan
    with pytest.raises(InvalidVector, match="NaN"):
        big.search("acme", nan)
    with pytest.raises(InvalidVector, match="zeros"):
        big.search("acme", np.zeros(384))
    with pytest.raises(InvalidVector, match="too large"):
        big.search("acme", np.full(384, 1e30))
    with pytest.raises(InvalidVector):
        big.search("acme", xq[:2])
    with pytest.raises(TypeError):
        big.delete("acme", "doc", "d1")
    with pytest.raises(InvalidVector, match="dimension"):
        big.add_batch("acme", "doc", ["x"], np.ones((1, 10)))
    with pytest.raises(InvalidVector, match="not a numeric vector"):
        big.add([("acme", "doc", "x", np.ones(3)), ("acme", "doc", "y", np.ones(384))])
    with pytest.raises(InvalidVector, match="2 ids but 1 vectors"):
        big.add_batch("acme", "doc", ["x", "y"], xq[:1])
    with pytest.raises(ValueError, match="tenant"):
        big.add_batch("", "doc", ["x"], xq[:1])
    with pytest.raises(ValueError, match="k must be"):
        big.search("acme", xq[0], k=0)
    assert issubclass(InvalidVector, ValueError) and issubclass(InvalidVector, WavegraphError)
    assert len(big) == N


def test_load_rejects_a_broken_directory(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, _ = data
    with pytest.raises(IndexCorrupt, match="manifest"):
        HybridIndex.load(tmp_path / "none")
    index = _small(tmp_path / "idx")
    index.add_batch("a", "doc", ["x"], xb[:1])
    index.save()
    with pytest.raises(IndexCorrupt, match="384-d"):
        HybridIndex.load(tmp_path / "idx", HybridParams(dim=128))
    index.save()  # a second snapshot replaces the first
    assert sorted(p.name for p in (tmp_path / "idx").glob("g0-*")) == ["g0-s2.rows.npz"]
    (tmp_path / "idx" / "g0-s2.rows.npz").write_bytes(b"junk")
    with pytest.raises(IndexCorrupt, match="unreadable"):
        HybridIndex.load(tmp_path / "idx")


def test_params_from_settings() -> None:
    params = HybridParams.from_settings(VectorSettings(k_prime=80, ef_search=100), hnsw_m=24)
    assert (params.k_prime, params.ef_search, params.hnsw_m, params.dim) == (80, 100, 24, 384)
    assert params.candidates(10) == 80 and params.candidates(100) == 200


@pytest.mark.gpu
def test_gpu_rerank_matches_cpu(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        pytest.skip("no GPU visible to faiss")
    xb, xq = data
    cpu = _small(tmp_path / "cpu", device="cpu")
    gpu = HybridIndex(
        tmp_path / "gpu", HybridParams(min_train=1000, train_size=4000, exact_below=50, device="gpu")
    )
    for index in (cpu, gpu):
        index.add_batch("a", "doc", [str(i) for i in range(5000)], xb[:5000])
    assert gpu.device == "gpu" and cpu.device == "cpu"
    for c, g in zip(cpu.search_batch("a", xq[:50], k=10), gpu.search_batch("a", xq[:50], k=10), strict=True):
        assert [h.id for h in c][:5] == [h.id for h in g][:5]
        np.testing.assert_allclose([h.score for h in c], [h.score for h in g], atol=1e-4)
