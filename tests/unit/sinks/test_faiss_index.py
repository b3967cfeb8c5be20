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
from wavegraph.sinks.faiss import Hit, HybridIndex, HybridParams, IndexCorrupt, InvalidVector, Row

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
    params = HybridParams.from_settings(VectorSettings(), calibrate=False)
    index = HybridIndex(tmp_path_factory.mktemp("big") / "idx", params)
    index.add_batch("acme", "doc", [f"d{i}" for i in range(N)], xb)
    return index


def _small(path: Path, **overrides: Any) -> HybridIndex:
    """A graph from 1,000 rows on. Not calibrated: at that size the scan beats the graph on any CPU, and
    these tests are about the graph path (calibration has its own tests)."""
    params: dict[str, Any] = {"min_train": 1000, "train_size": 4000, "exact_below": 50, "calibrate": False}
    return HybridIndex(path, HybridParams(**(params | overrides)))


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
    single = big.search("acme", xq[0], k=10)  # the query normalised alone: equal up to the last bit
    assert _ids(single) == _ids(hits)
    np.testing.assert_allclose([h.score for h in single], [h.score for h in hits], rtol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "path"),
    [({"exact_below": 50}, "hnsw"), ({"exact_below": 100_000, "graph_min_fraction": 1.0}, "exact")],
    ids=["hnsw-filter", "exact"],
)
def test_tenant_a_never_sees_tenant_b(
    tmp_path: Path, overrides: dict[str, Any], path: str, data: tuple[np.ndarray, np.ndarray]
) -> None:
    xb, xq = data
    index = _small(tmp_path / "idx", **overrides)
    index.add_batch("a", "doc", [f"a{i}" for i in range(1500)], xb[:1500])
    index.add_batch("a", "note", [f"n{i}" for i in range(300)], xb[1500:1800])
    # Tenant B holds the queries themselves: the best possible matches for every query.
    index.add_batch("b", "doc", [f"b{i}" for i in range(NQ)], xq)
    index.add_batch("b", "doc", [f"b{i}" for i in range(NQ, 2000)], xb[2000:3800])
    assert index.trained and index.path(index.count("a")) == path
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
        "g1.f16.faiss",
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


def _reference(index: HybridIndex, tenant: str, kind: str | None = None) -> tuple[list[str], np.ndarray]:
    """The ids and float64 copies of what the index stores for a filter (float16 unit rows), after checking
    that they are the added vectors normalised, to float16 precision."""
    ids, rows = [], []
    for t, kd, key, vector in index.rows():
        if t == tenant and kind in (None, kd):
            ids.append(key)
            rows.append(vector)
    return ids, np.asarray(rows, dtype=np.float64)


def _assert_exact(hits: list[Hit], query: np.ndarray, ids: list[str], stored: np.ndarray, k: int) -> None:
    """``hits`` is an exact top-k over ``stored`` by float64 brute force: its scores are the reference's
    top scores, each hit's reference score is its reported score (so any order among exact ties is
    accepted), and no id repeats."""
    q = query.astype(np.float64) / np.linalg.norm(query)
    scores = stored @ q
    top = np.argsort(-scores, kind="stable")[:k]
    assert len(hits) == len(top)
    position = {key: i for i, key in enumerate(ids)}
    got = np.array([h.score for h in hits])
    np.testing.assert_allclose(got, scores[top], atol=2e-6)
    np.testing.assert_allclose([scores[position[h.id]] for h in hits], got, atol=2e-6)
    assert len({h.id for h in hits}) == len(hits)


def _check_stored(ids: list[str], stored: np.ndarray, added: dict[str, np.ndarray]) -> None:
    expected = np.array([added[key] for key in ids], dtype=np.float64)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(stored, expected, rtol=1e-3, atol=1e-4)  # float16 rounding


def _threshold(dim: int) -> int:
    return HybridParams(dim=dim).hnsw_threshold


@pytest.mark.parametrize(
    ("dim", "n"),
    [(384, 300), (384, 5207), (784, 1000), (784, 2550), (128, 15_000)],
    ids=["384-small", "384-below-threshold", "784-small", "784-below-threshold", "128-below"],
)
def test_exact_path_equals_float64_brute_force(tmp_path: Path, dim: int, n: int) -> None:
    x = synthetic_clustered(n + 20, dim, seed=dim + n, topics=20)
    xb, xq = x[:n], x[n:]
    index = HybridIndex(tmp_path / "idx", HybridParams(dim=dim, calibrate=False))
    keys = [f"r{i}" for i in range(n)]
    index.add_batch("a", "doc", keys, xb)
    assert not index.trained and index.path(n) == "exact"
    assert n < _threshold(dim)
    ids, stored = _reference(index, "a")
    _check_stored(ids, stored, dict(zip(keys, xb, strict=True)))
    for q, hits in zip(xq, index.search_batch("a", xq, k=10), strict=True):
        _assert_exact(hits, q, ids, stored, 10)
    hits = index.search("a", xq[0], k=n + 5)  # more than there are: every row, once, in order
    assert len(hits) == n and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("dim", [384, 784])
def test_exact_filtered_path_just_above_the_threshold(tmp_path: Path, dim: int) -> None:
    """One row past the threshold the graph answers the big tenant; a small tenant (and a kind filter)
    is still answered exactly, and never sees the other tenant's rows."""
    threshold = _threshold(dim)
    small = threshold // 5
    n = threshold + small
    x = synthetic_clustered(n + 20, dim, seed=dim, topics=20)
    xb, xq = x[:n], x[n:]
    index = HybridIndex(tmp_path / "idx", HybridParams(dim=dim, calibrate=False))
    index.add_batch("b", "doc", [f"b{i}" for i in range(threshold - 1)], xb[: threshold - 1])
    assert not index.trained
    keys = [f"a{i}" for i in range(small)]
    index.add_batch("a", "doc", keys[: small // 2], xb[threshold : threshold + small // 2])
    index.add_batch("a", "note", keys[small // 2 :], xb[threshold + small // 2 :])
    assert index.trained
    index.add_batch("b", "doc", ["last"], xb[threshold - 1 : threshold])
    assert len(index) == n and index.count("b") == threshold
    assert index.path(index.count("b")) == "hnsw" and index.path(index.count("a")) == "exact"
    for hits in index.search_batch("b", xq, k=10):
        assert len(hits) == 10 and all(h.tenant == "b" for h in hits)
    ids, stored = _reference(index, "a")
    assert sorted(ids) == sorted(keys)
    _check_stored(ids, stored, dict(zip(keys, xb[threshold:], strict=True)))
    for q, hits in zip(xq, index.search_batch("a", xq, k=10), strict=True):
        assert all(h.tenant == "a" for h in hits)
        _assert_exact(hits, q, ids, stored, 10)
    ids, stored = _reference(index, "a", "note")
    assert sorted(ids) == sorted(keys[small // 2 :])
    for q, hits in zip(xq[:5], index.search_batch("a", xq[:5], k=10, kind="note"), strict=True):
        assert all(h.kind == "note" for h in hits)
        _assert_exact(hits, q, ids, stored, 10)


def test_untrained_exact_path_isolates_tenants(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, xq = data
    index = HybridIndex(tmp_path / "idx")
    index.add_batch("a", "doc", [f"a{i}" for i in range(400)], xb[:400])
    index.add_batch("b", "doc", [f"b{i}" for i in range(50)], xq[:50])  # the queries themselves
    assert not index.trained
    for hits in index.search_batch("a", xq[:50], k=10):
        assert len(hits) == 10 and all(h.tenant == "a" and h.id.startswith("a") for h in hits)
    assert [h.id for h in index.search("b", xq[7], k=1)] == ["b7"]
    index.delete("a", "doc", [f"a{i}" for i in range(400)])
    assert index.search_batch("a", xq[:3], k=10) == [[], [], []]
    assert index.search("b", xq[7], k=100)[0].id == "b7" and len(index.search("b", xq[7], k=100)) == 50


def _check_memory(index: HybridIndex, n: int, dim: int) -> dict[str, int]:
    mem = index.memory_bytes()
    assert mem["side_table"] > 0 and mem["mapped_file"] >= n * 2 * dim
    assert mem["resident"] == mem["index"] + mem["side_table"] > 0
    assert mem["total"] == mem["resident"] + mem["mapped_file"]
    return mem


@pytest.mark.parametrize("dim", [384, 784])
def test_memory_is_accounted_at_every_size(tmp_path: Path, dim: int) -> None:
    threshold = _threshold(dim)
    x = synthetic_clustered(threshold + 600, dim, seed=3, topics=20)
    index = HybridIndex(tmp_path / "idx", HybridParams(dim=dim, calibrate=False))
    previous = _check_memory(index, 0, dim)
    assert previous["index"] == 0
    for n in (100, threshold - 1, threshold + 1, threshold + 600):
        index.add_batch("a", "doc", [str(i) for i in range(len(index), n)], x[len(index) : n])
        assert index.search("a", x[0], k=1)[0].id == "0"
        mem = _check_memory(index, n, dim)
        assert mem["side_table"] > previous["side_table"]
        if index.trained:
            serialized = faiss.serialize_index(index._state.hnsw).nbytes
            assert abs(mem["index"] - serialized) <= 0.02 * serialized  # the structures' own sizes
            assert index.graph_codes == "fp16"  # a small graph: float16 codes, resident
            assert n * dim * 2 < mem["index"] <= n * (dim * 2 + 200)  # codes + links (M=20: <= 200 B)
        else:
            assert mem["index"] == 0  # the exact scan reads the mapped float16 rows: nothing resident
        previous = mem
    assert index.trained


def test_graph_moves_to_4bit_codes_past_its_threshold(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    xb, xq = data
    params = HybridParams(min_train=1000, fp16_graph_below=3000, train_size=4000, calibrate=False)
    index = HybridIndex(tmp_path / "idx", params)
    index.add_batch("a", "doc", [f"d{i}" for i in range(2000)], xb[:2000])
    assert index.graph_codes == "fp16" and index.path(2000) == "hnsw"
    fp16 = index.memory_bytes()
    assert fp16["index"] > 2000 * 384 * 2
    index.add_batch("a", "doc", [f"d{i}" for i in range(2000, 3500)], xb[2000:3500])
    assert index.graph_codes == "sq4" and len(index) == 3500
    sq4 = index.memory_bytes()
    assert sq4["index"] <= 0.25 * 3500 * 384 * 4 < fp16["index"] * 3500 / 2000
    exact = faiss.IndexFlatIP(384)
    exact.add(xb[:3500])
    truth = exact.search(xq, 10)[1]
    found = index.search_batch("a", xq, k=10)
    pairs = zip(found, truth, strict=True)
    recall = np.mean([len({int(h.id[1:]) for h in f} & set(t.tolist())) / 10 for f, t in pairs])
    assert recall >= 0.95, recall
    index.save()
    assert HybridIndex.load(tmp_path / "idx").graph_codes == "sq4"


def test_the_4bit_graph_has_links_built_from_float16_distances(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """The 4-bit index keeps the links of a float16 build over the same rows (4-bit distances make a
    worse graph at high dimension); one thread, so both builds are deterministic."""
    xb, _ = data
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        params = HybridParams(min_train=1000, fp16_graph_below=1500, train_size=4000, calibrate=False)
        index = HybridIndex(tmp_path / "idx", params)
        index.add_batch("a", "doc", [f"d{i}" for i in range(1600)], xb[:1600])
        assert index.graph_codes == "sq4"
        rows = np.asarray(index._state.store.rows[:1600], dtype=np.float32)
        ref = faiss.IndexHNSWSQ(384, faiss.ScalarQuantizer.QT_fp16, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        ref.hnsw.efConstruction = params.ef_construction
        ref.add(rows)
    finally:
        faiss.omp_set_num_threads(threads)
    got = index._state.hnsw.hnsw
    assert index._state.hnsw.ntotal == 1600 and got.entry_point == ref.hnsw.entry_point
    for name in ("neighbors", "levels", "offsets"):
        np.testing.assert_array_equal(
            faiss.vector_to_array(getattr(got, name)), faiss.vector_to_array(getattr(ref.hnsw, name))
        )
    sq4 = faiss.downcast_index(index._state.hnsw.storage)
    assert sq4.sq.qtype == faiss.ScalarQuantizer.QT_4bit and sq4.ntotal == 1600
    assert [h.id for h in index.search("a", xb[5], k=1)] == ["d5"]


def test_row_file_is_a_mapped_faiss_index(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    xb, _ = data
    index = HybridIndex(tmp_path / "idx")
    index.add_batch("a", "doc", [str(i) for i in range(300)], xb[:300])
    index.save()
    mapped = faiss.read_index(str(tmp_path / "idx" / "g0.f16.faiss"), faiss.IO_FLAG_MMAP_IFC)
    assert mapped.ntotal == 300
    stored = np.array([row[3] for row in index.rows()])
    np.testing.assert_array_equal(mapped.reconstruct_n(0, 300), stored)
    np.testing.assert_allclose(stored, xb[:300], rtol=1e-3, atol=1e-4)


def test_format_1_directory_is_converted_on_load(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """A format 1 directory (raw float16 rows, an L2 graph) loads, answers the same and is saved as 2."""
    import json

    xb, xq = data
    index = _small(tmp_path / "idx")
    index.add_batch("a", "doc", [f"d{i}" for i in range(1500)], xb[:1500])
    index.save()
    expected = index.search_batch("a", xq[:20], k=10)
    exact = index.search_batch("a", xq[:5], k=1500)
    index.close()
    d = tmp_path / "idx"
    raw = np.fromfile(d / "g0.f16.faiss", dtype=np.uint8)[81:].view(np.float16)
    raw[: 1500 * 384].tofile(d / "g0.f16")
    (d / "g0.f16.faiss").unlink()
    graph = faiss.read_index(str(d / "g0-s1.hnsw"))
    graph.metric_type = faiss.METRIC_L2
    faiss.downcast_index(graph.storage).metric_type = faiss.METRIC_L2
    faiss.write_index(graph, str(d / "g0-s1.hnsw"))
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["format"] = 1
    (d / "manifest.json").write_text(json.dumps(manifest))
    loaded = HybridIndex.load(d)
    assert loaded.search_batch("a", xq[:20], k=10) == expected
    assert loaded.search_batch("a", xq[:5], k=1500) == exact
    assert json.loads((d / "manifest.json").read_text())["format"] == 2
    assert not (d / "g0.f16").exists() and (d / "g0.f16.faiss").exists()
    assert HybridIndex.load(d).search_batch("a", xq[:20], k=10) == expected


def test_hnsw_threshold_follows_the_dimension() -> None:
    assert HybridParams(dim=384).hnsw_threshold == 5208
    assert HybridParams(dim=784).hnsw_threshold == 2551
    assert HybridParams(dim=16).hnsw_threshold == HybridParams().train_size
    assert HybridParams(dim=4096).hnsw_threshold == 1024
    assert HybridParams(min_train=700).hnsw_threshold == 700
    assert HybridParams().graph_ef(10) == 80 and HybridParams().graph_ef(100) == 200
    assert HybridParams().graph_ef(10, codes="sq4") == 80
    assert HybridParams(sq4_ef_scale=1.5).graph_ef(10, codes="sq4") == 96
    assert HybridParams(dim=384).sq4_threshold == 41_666 and HybridParams(dim=784).sq4_threshold == 20_408
    assert HybridParams().graph_ef(10, fraction=0.25) == 160 and HybridParams().graph_ef(10, 1e-6) == 1024
    with pytest.raises(ValueError, match="min_train"):
        HybridParams(min_train=100)
    with pytest.raises(ValueError, match="train_size"):
        HybridParams(min_train=5000, train_size=4000)


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
    for index in (cpu, gpu):
        index.add_batch("a", "note", [f"n{i}" for i in range(100)], xb[5000:5100])  # a small filter
    for kind in (None, "note"):  # the graph path, then the exact path (knn_gpu on the GPU)
        c_hits = cpu.search_batch("a", xq[:50], k=10, kind=kind)
        g_hits = gpu.search_batch("a", xq[:50], k=10, kind=kind)
        for c, g in zip(c_hits, g_hits, strict=True):
            assert [h.id for h in c][:5] == [h.id for h in g][:5]
            np.testing.assert_allclose([h.score for h in c], [h.score for h in g], atol=1e-4)


def test_the_exact_path_refuses_bad_queries_and_scales_good_ones(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    """Below the threshold the scan normalises the query itself: the same refusals as the graph path
    (and for a tenant with no rows), and a scaled query finds what its unit vector finds."""
    xb, xq = data
    index = HybridIndex(tmp_path / "idx", HybridParams(calibrate=False))
    index.add_batch("acme", "doc", [f"d{i}" for i in range(500)], xb[:500])
    assert index.path(500) == "exact"
    nan = xq[0].copy()
    nan[7] = np.nan
    for tenant in ("acme", "nobody"):
        with pytest.raises(InvalidVector, match="NaN"):
            index.search(tenant, nan)
        with pytest.raises(InvalidVector, match="zeros"):
            index.search(tenant, np.zeros(384))
        with pytest.raises(InvalidVector, match="too large"):
            index.search(tenant, np.full(384, 1e30))
    with pytest.raises(InvalidVector, match="row 1 holds NaN"):
        index.search_batch("acme", np.vstack([xq[0], nan]))
    unit = index.search("acme", xq[3], k=10)
    scaled = index.search("acme", (xq[3] * 250.0).astype(np.float64), k=10)  # float64, not unit length
    assert _ids(scaled) == _ids(unit)
    assert [h.score for h in scaled] == pytest.approx([h.score for h in unit], abs=1e-6)
    assert all(h.score <= 1.0 + 1e-3 for h in scaled)


def test_hits_are_immutable_hashable_and_untracked() -> None:
    import gc

    hit = Hit("acme", "doc", "d1", 0.5)
    assert hit == Hit("acme", "doc", "d1", 0.5) and len({hit, Hit("acme", "doc", "d1", 0.5)}) == 1
    with pytest.raises(AttributeError):
        hit.score = 1.0  # type: ignore[misc]
    assert not gc.is_tracked(hit)  # no cycles possible: a search adds no work to the collector
