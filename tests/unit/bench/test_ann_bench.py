"""``wavegraph bench ann`` in quick mode, and its dataset helpers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from wavegraph.bench.ann import (
    bench_sizes,
    embed_cached,
    load_vectors,
    run_ann_bench,
    synthetic_clustered,
    wordnet_sentences,
)
from wavegraph.errors import MissingPrerequisite
from wavegraph.sinks.faiss import HybridParams

FIELDS = ("index", "recall@10", "recall@100", "p50_ms", "p95_ms", "p99_ms", "qps", "memory_bytes", "build_s")


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=240)


def test_quick_bench_reports_the_fields_bench_md_names(tmp_path: Path) -> None:
    out = tmp_path / "ann.json"
    report = run_ann_bench(quick=True, out=out, real=False, console=_quiet())
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["bench"] == "ann" and report["params"]["quick"] is True
    rows = report["rows"]
    assert {r["index"].split()[0] for r in rows} >= {"hybrid", "HNSW20-flat", "exact"}
    assert any(r["index"].startswith("IVF") for r in rows)
    for row in rows:
        for name in FIELDS:
            assert name in row, (row["index"], name)
        assert 0.0 <= row["recall@10"] <= 1.0 and row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["memory_bytes"] > 0
    datasets = report["params"]["datasets"]
    assert {d["dim"] for d in datasets.values()} == {384, 784}
    thresholds = report["params"]["hybrid"]["hnsw_threshold"]
    ours = [r for r in rows if "hybrid" in r["index"]]
    for dim in (384, 784):
        threshold = thresholds[str(dim)]
        assert threshold == HybridParams(dim=dim).hnsw_threshold
        sizes = sorted(r["n"] for r in ours if r["dim"] == dim)
        assert sizes == bench_sizes(threshold, quick=True) and sizes[0] < threshold <= sizes[1]
    for row in ours:
        same = {
            r["index"].split()[0]: r for r in rows if r["dataset"] == row["dataset"] and r["n"] == row["n"]
        }
        exact, hnsw = same["exact"], same["HNSW20-flat"]
        assert exact["recall@10"] == 1.0
        assert row["p95_vs_exact"] == round(row["p95_ms"] / exact["p95_ms"], 3)
        assert row["p95_vs_hnsw"] == round(row["p95_ms"] / hnsw["p95_ms"], 3)
        assert row["recall_vs_hnsw"] == round(row["recall@10"] - hnsw["recall@10"], 4)
        # memory: resident = graph + codes + side table, the float16 rows mapped, at every size
        assert row["memory_bytes"] == row["index_bytes"] + row["side_table_bytes"]
        assert row["side_table_bytes"] > 0 and row["mapped_bytes"] >= row["n"] * row["dim"] * 2
        if row["path"] == "exact":
            assert row["n"] < thresholds[str(row["dim"])]
            assert row["index_bytes"] == row["n"] * row["dim"] * 4  # the float32 copy it scans
            assert row["graph"] is None
            assert row["recall@10"] >= 0.999 and row["recall@100"] >= 0.999  # float16 rows, exact scan
        else:
            assert row["path"] == "hnsw" and row["n"] >= thresholds[str(row["dim"])]
            assert row["graph"] == "fp16"  # 2T rows: under the float16 graph's threshold
            assert row["n"] * row["dim"] * 2 < row["index_bytes"] <= row["n"] * (row["dim"] * 2 + 200)
            assert row["recall@10"] >= 0.95 and row["recall@100"] >= 0.9
    assert report["ratio"] == max(r["p95_vs_exact"] for r in ours)
    above = [r for r in ours if r["path"] == "hnsw"]
    assert report["params"]["worst_p95_vs_hnsw"] == max(r["p95_vs_hnsw"] for r in above)
    assert report["params"]["worst_recall_vs_hnsw"] == min(r["recall_vs_hnsw"] for r in above)


def test_bench_sizes_straddle_the_threshold() -> None:
    assert bench_sizes(5208, quick=True) == [2604, 10416]
    full = bench_sizes(2551, quick=False)
    assert full == [637, 2550, 2552, 10204, 40816]
    assert sum(s < 2551 for s in full) == 2 and sum(s >= 2551 for s in full) == 3


def test_bench_on_a_user_file(tmp_path: Path) -> None:
    x = synthetic_clustered(1500, 32, seed=3, topics=20, topic_rank=4, leaf_rank=8)
    path = tmp_path / "mine.fvecs"
    raw = np.empty((len(x), 33), dtype=np.int32)
    raw[:, 0] = 32
    raw[:, 1:] = x.view(np.int32)
    raw.tofile(path)
    report = run_ann_bench(quick=True, out=tmp_path / "r.json", data=path, k=5, console=_quiet())
    assert list(report["params"]["datasets"]) == ["mine"]
    assert report["params"]["datasets"]["mine"] == {"dim": 32, "n": 1300, "queries": 200, "sizes": [1300]}
    assert all("recall@5" in r for r in report["rows"])
    ours = next(r for r in report["rows"] if "hybrid" in r["index"])
    assert ours["path"] == "exact" and ours["recall@10"] >= 0.999


def test_load_vectors_npy_and_fvecs(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", x)
    np.testing.assert_array_equal(load_vectors(tmp_path / "a.npy"), x)
    raw = np.empty((3, 5), dtype=np.int32)
    raw[:, 0] = 4
    raw[:, 1:] = x.view(np.int32)
    raw.tofile(tmp_path / "a.fvecs")
    np.testing.assert_array_equal(load_vectors(tmp_path / "a.fvecs"), x)
    (tmp_path / "bad.fvecs").write_bytes(np.array([7, 1, 2], dtype=np.int32).tobytes())
    with pytest.raises(ValueError, match="fvecs"):
        load_vectors(tmp_path / "bad.fvecs")
    with pytest.raises(ValueError, match=r"\.npy or \.fvecs"):
        load_vectors(tmp_path / "a.csv")


def test_synthetic_is_seeded_and_unit_norm() -> None:
    a = synthetic_clustered(500, 16, seed=5, topics=10, leaf_rank=4)
    np.testing.assert_array_equal(a, synthetic_clustered(500, 16, seed=5, topics=10, leaf_rank=4))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(a, synthetic_clustered(500, 16, seed=6, topics=10, leaf_rank=4))


def test_wordnet_glosses_and_embedding_cache(tmp_path: Path) -> None:
    with pytest.raises(MissingPrerequisite, match="wordnet-base"):
        wordnet_sentences(tmp_path)
    licence = "  1 This software and database is being provided\n"
    line = '00001740 03 n 01 entity 0 000 | that which exists; "a thing"; "another"  \n'
    for name in ("data.noun", "data.verb", "data.adj", "data.adv"):
        (tmp_path / name).write_text(licence + line + line.replace("exists", f"is a {name}"))
    sentences = wordnet_sentences(tmp_path)
    assert sentences[:2] == ["that which exists", "that which is a data.noun"] and len(sentences) == 5

    calls: list[int] = []

    def fake_embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.ones((len(texts), 384), dtype=np.float32)

    first = embed_cached(sentences, tmp_path / "cache", fake_embed)
    second = embed_cached(sentences, tmp_path / "cache", fake_embed)
    np.testing.assert_array_equal(first, second)
    assert calls == [5]
