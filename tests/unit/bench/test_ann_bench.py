"""``wavegraph bench ann`` in quick mode, and its dataset helpers."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from cycle_clock import CycleClock
from rich.console import Console

from wavegraph.bench import ann
from wavegraph.bench.ann import (
    _RUN,
    _recall,
    bench_sizes,
    default_out,
    embed_cached,
    load_vectors,
    run_ann_bench,
    synthetic_clustered,
    wordnet_sentences,
)
from wavegraph.errors import MissingPrerequisite
from wavegraph.settings import Settings
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
        _assert_memory_is_the_index_size(row)
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
        if row["n"] < thresholds[str(row["dim"])]:
            assert row["path"] == "exact"
            assert row["index_bytes"] == 0  # the exact scan reads the mapped float16 rows
            assert row["graph"] is None
        else:  # a graph exists; the index measured which path is faster on this machine
            assert row["path"] in {"exact", "hnsw"}
            assert row["graph"] == "fp16"  # 2T rows: under the float16 graph's threshold
            assert row["n"] * row["dim"] * 2 < row["index_bytes"] <= row["n"] * (row["dim"] * 2 + 200)
        if row["path"] == "exact":
            assert row["recall@10"] >= 0.999 and row["recall@100"] >= 0.999  # float16 rows, exact scan
        else:
            assert row["recall@10"] >= 0.95 and row["recall@100"] >= 0.9
    assert report["ratio"] == max(r["p95_vs_exact"] for r in ours)
    above = [r for r in ours if r["n"] >= thresholds[str(r["dim"])]]
    assert report["params"]["worst_p95_vs_hnsw"] == max(r["p95_vs_hnsw"] for r in above)
    assert report["params"]["worst_recall_vs_hnsw"] == min(r["recall_vs_hnsw"] for r in above)


def _assert_memory_is_the_index_size(row: dict[str, Any]) -> None:
    """A faiss baseline's ``memory_bytes`` is its serialized size: the float32 rows plus its structure."""
    rows = row["n"] * row["dim"] * 4
    name, memory = row["index"], row["memory_bytes"]
    assert row["memory_vs_flat"] == round(memory / rows, 4)
    if name == "exact flat":
        assert rows <= memory <= rows + 1024
    elif name.startswith("HNSW"):
        m = int(name.removeprefix("HNSW").split("-")[0])
        links = row["n"] * 2 * m * 4  # level 0 keeps 2M int32 neighbours per node
        assert rows + links <= memory <= rows + 2 * links + row["n"] * 64
    elif name.startswith("IVF"):
        lists = int(name.removeprefix("IVF").split("-")[0])
        floor = rows + row["n"] * 8 + lists * row["dim"] * 4  # rows, int64 ids, centroids
        assert floor <= memory <= floor + lists * 64 + 4096


def test_recall_counts_the_true_neighbours_found() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[2, 9, 4, 1], [8, 5, -1, -1]])  # at 4: 3 and 2 of 4; at 2: 1 and 1 of 2
    assert _recall(found, truth, 4) == 5 / 8
    assert _recall(found, truth, 2) == 2 / 4
    assert _recall(truth[:, ::-1], truth, 4) == 1.0  # order inside the top k does not matter


def _user_file(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """1,300 rows and 200 queries of 32-d clustered vectors, scaled to norms in [0.5, 4] (the bench must
    normalise them: the recall is cosine), as ``.npy`` files."""
    x = synthetic_clustered(1500, 32, seed=3, topics=20, topic_rank=4, leaf_rank=8)
    x = x * np.random.default_rng(7).uniform(0.5, 4.0, size=(len(x), 1)).astype(np.float32)
    base, queries = x[:1300], x[1300:]
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "queries.npy", queries)
    return tmp_path / "base.npy", tmp_path / "queries.npy", base, queries


def test_exhaustive_ivf_has_recall_one_and_one_probe_less_on_scaled_vectors(
    settings: Settings, tmp_path: Path
) -> None:
    """IVF probing every list is an exact search: its recall is 1.0 only if the bench's ground truth is the
    exact cosine answer (computed here with numpy: unambiguous, no near ties at the 10th/100th rank);
    probing one list misses neighbours, so the figure is measured, not a constant."""
    data, queries, base, q = _user_file(tmp_path)
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    qunit = q / np.linalg.norm(q, axis=1, keepdims=True)
    scores = np.sort(qunit @ unit.T, axis=1)[:, ::-1]
    for at in (10, 100):
        assert (scores[:, at - 1] - scores[:, at] > 1e-5).all(), "a near tie would make the truth ambiguous"
    recalls = {}
    for probes in (1, 100):
        vector = settings.vector.model_copy(update={"probes": probes})
        report = run_ann_bench(
            quick=True,
            out=tmp_path / f"p{probes}.json",
            data=data,
            queries=queries,
            settings=settings.model_copy(update={"vector": vector}),
            console=_quiet(),
        )
        ivf = next(r for r in report["rows"] if r["index"].startswith("IVF"))
        assert ivf["params"] == f"lists=33 probes={min(probes, 33)}"  # 1,300 // 39 lists
        recalls[probes] = (ivf["recall@10"], ivf["recall@100"])
        exact = next(r for r in report["rows"] if r["index"] == "exact flat")
        assert (exact["recall@10"], exact["recall@100"]) == (1.0, 1.0)
    assert recalls[100] == (1.0, 1.0)
    assert recalls[1][0] < 0.95 and recalls[1][1] < 0.95


def test_latency_figures_are_the_percentiles_of_the_timed_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [float(v) for v in (7, 1, 3, 20, 2, 9, 4, 5, 6, 8, 10, 12, 11, 13, 15, 14, 16, 18, 17, 19)]
    assert len(steps) == _RUN
    clock = CycleClock(steps)
    monkeypatch.setattr(ann, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    data, queries, _, _ = _user_file(tmp_path)
    report = run_ann_bench(quick=True, out=tmp_path / "r.json", data=data, queries=queries, console=_quiet())
    # 200 queries in runs of 20, 3 rounds: each index timed the 20 steps 30 times
    samples = np.array(steps * 30)
    want = {
        "p50_ms": round(float(np.percentile(samples, 50)), 4),
        "p95_ms": round(float(np.percentile(samples, 95)), 4),
        "p99_ms": round(float(np.percentile(samples, 99)), 4),
        "qps": round(1e3 / float(samples.mean()), 1),
    }
    assert want == {"p50_ms": 10.5, "p95_ms": 19.05, "p99_ms": 20.0, "qps": 95.2}
    rows = report["rows"]
    assert len(rows) == 4
    for row in rows:
        assert {name: row[name] for name in want} == pytest.approx(want, abs=1e-3), row["index"]
        assert round(row["build_s"] * 1e3, 6) in steps  # one interval of the clock: the build was timed by it
    ours = next(r for r in rows if "hybrid" in r["index"])
    assert ours["p95_vs_exact"] == 1.0 and ours["p95_vs_hnsw"] == 1.0
    assert report["ratio"] == 1.0
    assert clock.reads == 2 * (4 + 4 * 200 * 3)  # four builds, then every timed query, nothing else


def test_bench_sizes_straddle_the_threshold() -> None:
    assert bench_sizes(5208, quick=True) == [2604, 10416]
    full = bench_sizes(2551, quick=False)
    assert full == [637, 2550, 2552, 10204, 40816]
    assert sum(s < 2551 for s in full) == 2 and sum(s >= 2551 for s in full) == 3


def test_each_kind_of_run_has_its_own_default_file() -> None:
    """A quick, partial or --n 0 run never replaces the committed 1 M result."""
    assert default_out(False, 1_000_000, False) == Path("bench/results/ann.json")
    assert default_out(False, 0, False) == Path("bench/results/ann_full.json")
    assert default_out(True, 1_000_000, False) == Path("bench/results/ann_quick.json")
    assert default_out(True, 0, True) == Path("bench/results/ann_quick.json")
    assert default_out(False, 1_000_000, True) == Path("bench/results/ann_custom.json")


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
