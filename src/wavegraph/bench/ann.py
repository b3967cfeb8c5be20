"""``wavegraph bench ann``: the FAISS hybrid index against exact flat, HNSW-flat and IVF-flat search, at
collection sizes below and above the hybrid's HNSW threshold, at 384-d and 784-d.

Datasets:

- ``wordnet`` (384-d, real): MiniLM embeddings (:mod:`wavegraph.processors.embed_text`) of WordNet glosses
  from Debian's ``wordnet-base`` (``/usr/share/wordnet/data.*``; 116,697 distinct definitions), in a
  seeded order; queries are the first glosses, the base the ones after the first 1,000. Embedding takes
  ~6 minutes on one core for the full 101,000, so vectors are cached as ``.npy`` under
  ``<cache_dir>/ann`` (a quick run embeds only the ~11,000 it needs). Without the files or the model the
  run says so and uses ``synthetic`` at 384-d instead.
- ``synthetic`` (784-d, and 384-d at ``n`` rows to scale): seeded clustered unit vectors
  (:func:`synthetic_clustered`). No real 784-d set is available offline (see DATA.md), so 784-d is
  synthetic.
- ``file``: any ``.npy`` / ``.fvecs`` given with ``data`` (queries from ``queries`` or held out).

Sizes: for dimension d with HNSW threshold T (``HybridParams.hnsw_threshold``), quick runs T/2 and 2T;
full runs T/4, T-1, T+1, 4T, 16T (and 100,000 for WordNet); each size is a prefix of the base. For each
(dataset, size): ground truth from ``faiss.IndexFlatIP`` (unit vectors: cosine) in the same run, then
``exact flat`` (that index), ``hybrid ...`` (ours, :class:`~wavegraph.sinks.faiss.HybridIndex` built with
``rebuild()`` and queried through ``search_batch`` with its tenant filter), ``HNSW<M>-flat`` (same M and
efConstruction, efSearch = ``vector.ef_search``) and ``IVF<lists>-flat`` (``vector.ivfflat_lists`` /
``vector.probes``, as pgvector uses).

Each row: ``build_s``, ``memory_bytes`` (resident: for faiss baselines their serialized size; for the
hybrid graph + codes + side table, with ``index_bytes``, ``side_table_bytes`` and ``mapped_bytes``, the
float16 row file, alongside), ``memory_vs_flat`` (÷ n*d*4), ``recall@10``, ``recall@100``, single-query
``p50_ms``/``p95_ms``/``p99_ms`` and ``qps`` (one query per call on one faiss thread, as a request
handler calls it; each timed call is the index's own search call: ``search_batch`` returning hits for
the hybrid, ``index.search`` for faiss). Latencies of one size are steady-state and *interleaved*: each
index answers runs of 20 consecutive queries (after one untimed query, since the run before may have
been another index's cache-flushing scan), the runs of all indexes alternate in a seeded random order
(2-3 passes over the queries), so a burst of load on the shared machine hits all indexes alike.
The hybrid row adds ``path`` (``exact`` or ``hnsw``: at or above the threshold the index itself
measured which is faster on this machine, see :mod:`wavegraph.sinks.faiss.calibrate`), ``p95_vs_exact`` and
``p95_vs_hnsw`` (its p95 ÷ the baseline's, same run) and ``recall_vs_hnsw`` (its recall@10 minus
HNSW-flat's). The headline ``ratio`` is the worst ``p95_vs_exact`` of the run (<= 1: the hybrid never
lost to brute force); ``params.worst_p95_vs_hnsw`` and ``params.worst_recall_vs_hnsw`` give the worst
figures above the threshold (targets: <= 1.5 and >= 0).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from wavegraph.errors import MissingPrerequisite
from wavegraph.sinks.faiss import HybridIndex, HybridParams

if TYPE_CHECKING:
    from wavegraph.settings import Settings, VectorSettings

__all__ = [
    "Dataset",
    "bench_sizes",
    "embed_cached",
    "load_vectors",
    "run_ann_bench",
    "synthetic_clustered",
    "wordnet_sentences",
]

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_BASE = 100_000
WORDNET_QUERIES = 1_000
_WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


def wordnet_sentences(wordnet_dir: Path = WORDNET_DIR) -> list[str]:
    """The distinct WordNet definitions (gloss text before its quoted examples), in file order."""
    files = [wordnet_dir / name for name in _WORDNET_FILES]
    if not all(f.is_file() for f in files):
        raise MissingPrerequisite(
            f"the real ANN dataset needs WordNet's data files in {wordnet_dir}: "
            "apt-get install --no-install-recommends wordnet-base"
        )
    seen: dict[str, None] = {}
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  ") or " | " not in line:  # licence header
                    continue
                gloss = line.split(" | ", 1)[1]
                definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
                if definition:
                    seen.setdefault(definition, None)
    return list(seen)


def embed_cached(
    sentences: list[str],
    cache_dir: Path,
    embed: Callable[[list[str]], np.ndarray],
    *,
    batch: int = 512,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embeddings of ``sentences``, read from (or written to) ``cache_dir/ann/<hash>.npy``."""
    path = _cache_path(sentences, cache_dir)
    if path.is_file():
        cached = np.load(path)
        if on_progress is not None:
            on_progress(len(sentences))
        return np.asarray(cached, dtype=np.float32)
    out = np.empty((len(sentences), 384), dtype=np.float32)
    for start in range(0, len(sentences), batch):
        chunk = sentences[start : start + batch]
        out[start : start + len(chunk)] = embed(chunk)
        if on_progress is not None:
            on_progress(len(chunk))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out


def _cache_path(sentences: list[str], cache_dir: Path) -> Path:
    from wavegraph.processors.embed_text import MODEL_SHA256

    key = hashlib.sha256(MODEL_SHA256.encode())
    for s in sentences:
        key.update(s.encode())
        key.update(b"\0")
    return cache_dir / "ann" / f"minilm-{len(sentences)}-{key.hexdigest()[:16]}.npy"


def synthetic_clustered(
    n: int,
    dim: int = 384,
    *,
    seed: int = 0,
    topics: int = 200,
    leaf_size: int = 500,
    topic_rank: int = 32,
    leaf_rank: int = 32,
    topic_spread: float = 1.5,
    leaf_spread: float = 5.0,
    decay: float = 0.7,
    noise: float = 0.6,
    skew: float = 1.0,
    spread_var: float = 0.4,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``n`` seeded unit vectors in two-level clusters (topics -> leaves), scaled like a growing corpus.

    ``topics`` unit centres (shifted by one shared direction); ``max(topics, n // leaf_size)`` leaves, each
    at its topic's centre plus a low-rank offset (rank ``topic_rank``); a point is its leaf's centre plus a
    low-rank offset (rank ``leaf_rank``, basis 1/sqrt(dim)-scaled, spectrum r^-decay normalised to
    ``leaf_spread``, times a per-leaf lognormal(0, ``spread_var``) factor) plus isotropic ``noise``, then
    normalised. Leaf popularity is lognormal(0, ``skew``).

    The number of leaves grows with ``n`` (500 points per leaf), the way a corpus grows by adding topics.
    The defaults match the MiniLM WordNet set at 100,000 rows: local intrinsic dimension (MLE, k=20) 15.8
    vs 16.6, mean cosine to the 1st/10th neighbour 0.77/0.70 vs 0.73/0.59, HNSW16-flat (efC 80, ef 64)
    recall@10 0.977 vs 0.989, i.e. slightly harder than the real set. A fixed number of clusters does not
    scale: at 1 M each cluster fills densely, the set becomes Gaussian noise locally and HNSW16-flat itself
    falls to 0.78 recall@10 (measured with 200 fixed clusters). Deterministic in (n, dim, seed, params).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    shared = rng.standard_normal(dim).astype(np.float32)
    centres += 0.3 * shared / np.linalg.norm(shared)
    lam_topic = _spectrum(topic_rank, decay, topic_spread)
    lam_leaf = _spectrum(leaf_rank, decay, leaf_spread)
    leaves = max(topics, n // leaf_size)
    leaf_topic = rng.integers(0, topics, leaves)
    leaf_centres = np.empty((leaves, dim), dtype=np.float32)
    for t in range(topics):
        members = np.flatnonzero(leaf_topic == t)
        basis = _basis(seed, 1, t, topic_rank, dim)
        z = rng.standard_normal((members.size, topic_rank)).astype(np.float32) * lam_topic
        leaf_centres[members] = centres[t] + z @ basis
    weights = rng.lognormal(0.0, skew, leaves) if skew > 0 else np.ones(leaves)
    labels = rng.choice(leaves, size=n, p=weights / weights.sum())
    scale = (rng.lognormal(0.0, spread_var, leaves) if spread_var > 0 else np.ones(leaves)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    chunk = 65536
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        lab = labels[start:stop]
        crng = np.random.default_rng([seed, 2, start])
        block = leaf_centres[lab]
        z = crng.standard_normal((stop - start, leaf_rank)).astype(np.float32) * lam_leaf
        order = np.argsort(lab, kind="stable")
        for group in np.split(order, np.flatnonzero(np.diff(lab[order])) + 1):
            j = int(lab[group[0]])
            block[group] += (z[group] @ _basis(seed, 3, j, leaf_rank, dim)) * scale[j]
        block += crng.standard_normal(block.shape, dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
        if on_progress is not None:
            on_progress(stop - start)
    return out


def _spectrum(rank: int, decay: float, norm: float) -> np.ndarray:
    lam = np.arange(1, rank + 1, dtype=np.float32) ** np.float32(-decay)
    return (lam * np.float32(norm) / np.linalg.norm(lam)).astype(np.float32)


def _basis(seed: int, level: int, j: int, rank: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng([seed, level, j])
    return (rng.standard_normal((rank, dim)) / np.sqrt(dim)).astype(np.float32)


def load_vectors(path: Path) -> np.ndarray:
    """Read ``.npy`` (2-D) or ``.fvecs`` into float32 ``(n, d)``."""
    if path.suffix == ".npy":
        arr = np.load(path, mmap_mode="r")
    elif path.suffix == ".fvecs":
        raw = np.fromfile(path, dtype=np.int32)
        if raw.size == 0:
            raise ValueError(f"{path}: empty .fvecs file")
        d = int(raw[0])
        if d <= 0 or raw.size % (d + 1):
            raise ValueError(f"{path}: not an .fvecs file (dimension header {d})")
        arr = raw.reshape(-1, d + 1)[:, 1:].view(np.float32)
    else:
        raise ValueError(f"{path}: expected a .npy or .fvecs file")
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array of vectors, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


@dataclass
class Dataset:
    name: str
    base: np.ndarray  # unit rows
    queries: np.ndarray  # unit rows
    sizes: list[int] = field(default_factory=list)  # prefixes of ``base`` to bench (the ann bench)


def bench_sizes(threshold: int, quick: bool) -> list[int]:
    """Collection sizes around the HNSW threshold: T/2, 2T (quick); T/4, T-1, T+1, 4T, 16T (full)."""
    if quick:
        return [threshold // 2, 2 * threshold]
    return [threshold // 4, threshold - 1, threshold + 1, 4 * threshold, 16 * threshold]


def run_ann_bench(
    quick: bool = False,
    out: Path | None = None,
    data: Path | None = None,
    queries: Path | None = None,
    k: int = 10,
    n: int = 1_000_000,
    *,
    sizes: Sequence[int] | None = None,
    dims: Sequence[int] = (384, 784),
    real: bool = True,
    settings: Settings | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the ANN bench, write the JSON report (``out``, default :func:`default_out`), return it.

    ``quick``: 200 queries, sizes T/2 and 2T per dimension (a minute or two). Otherwise 1,000 queries,
    the full size grid, and ``n`` synthetic 384-d vectors (0 skips that set; 1,000,000 takes ~25 min).
    ``sizes`` replaces the grid (sizes past a dataset's rows are dropped); ``dims`` picks the dimensions;
    ``real=False`` uses synthetic vectors at 384-d too. ``data`` (+ ``queries``) runs on that file alone
    (all its rows, or the given ``sizes``). ``k`` is the k of the latency runs.
    """
    from wavegraph.report import build_report, write_report
    from wavegraph.settings import Settings

    settings = settings or Settings()
    console = console or Console()
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    nq = 200 if quick else 1000
    params: dict[str, Any] = {"quick": quick, "k": k, "queries": nq, "dims": list(dims)}
    skipped: list[str] = []
    rows: list[dict[str, Any]] = []
    with _progress(console) as progress:
        datasets: list[Dataset] = []
        if data is not None:
            datasets.append(_file_dataset(data, queries, nq, sizes, progress))
        else:
            for dim in dims:
                threshold = _hybrid_params(settings.vector, dim).hnsw_threshold
                grid = list(sizes) if sizes else bench_sizes(threshold, quick)
                if dim == 384 and not quick and not sizes:
                    grid.append(WORDNET_BASE)  # the real set at its full size
                datasets.append(_dataset_for(dim, grid, nq, real, settings, skipped, console, progress))
            if not quick and n > 0 and sizes is None:
                datasets.append(_synthetic_dataset("synthetic-scale", n, 384, nq, [n], progress))
        for ds in datasets:
            for size in ds.sizes:
                rows.extend(_bench_size(ds, size, settings.vector, k, progress))
    params["datasets"] = {
        ds.name: {"dim": ds.base.shape[1], "n": len(ds.base), "queries": len(ds.queries), "sizes": ds.sizes}
        for ds in datasets
    }
    hybrid = _hybrid_params(settings.vector, 384)
    params["hybrid"] = {
        "m": hybrid.hnsw_m,
        "ef_construction": hybrid.ef_construction,
        "ef_search": hybrid.ef_search,
        "ef_scale": hybrid.ef_scale,
        "sq4_ef_scale": hybrid.sq4_ef_scale,
        "k_prime": hybrid.k_prime,
        "hnsw_threshold": {str(d): _hybrid_params(settings.vector, d).hnsw_threshold for d in dims},
        "sq4_threshold": {str(d): _hybrid_params(settings.vector, d).sq4_threshold for d in dims},
        "ivf_lists": settings.vector.ivfflat_lists,
        "ivf_probes": settings.vector.probes,
    }
    if skipped:
        params["skipped"] = skipped
    ours = [r for r in rows if "hybrid" in r["index"]]
    # at or above the threshold (of the row's own dimension: a --data file may have any), whichever path
    # the index measured faster there
    above = [r for r in ours if r["n"] >= _hybrid_params(settings.vector, r["dim"]).hnsw_threshold]
    ratio = max((r["p95_vs_exact"] for r in ours), default=None)
    params["ratio"] = "worst hybrid p95 / exact flat p95 over every size (<= 1: never loses to brute force)"
    if above:
        params["worst_p95_vs_hnsw"] = max(r["p95_vs_hnsw"] for r in above)
        params["worst_recall_vs_hnsw"] = min(r["recall_vs_hnsw"] for r in above)
    report = build_report("ann", params, rows, ratio)
    write_report(report, out or default_out(quick, n, data is not None or sizes is not None), console)
    return report


def default_out(quick: bool, n: int, custom: bool) -> Path:
    """Where a run writes without ``--out``: one file per kind of run, so a quick or partial run never
    replaces the 1 M result (``ann.json``). ``ann_quick.json`` (``quick``), ``ann_custom.json`` (a
    ``--data`` file or ``--sizes``), ``ann_full.json`` (the full grid without the 1 M set, ``n`` = 0)."""
    name = "ann_quick" if quick else "ann_custom" if custom else "ann_full" if n == 0 else "ann"
    return Path("bench/results") / f"{name}.json"


def _hybrid_params(vector: VectorSettings, dim: int) -> HybridParams:
    return HybridParams.from_settings(vector, dim=dim)


# ---------------------------------------------------------------------------------------------- datasets


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _normalised(x: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.isfinite(x).all() or (norms == 0).any():
        raise ValueError(f"{what}: vectors must be finite and non-zero")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _dataset_for(
    dim: int,
    sizes: list[int],
    nq: int,
    real: bool,
    settings: Settings,
    skipped: list[str],
    console: Console,
    progress: Progress,
) -> Dataset:
    if dim == 384 and real:
        try:
            return _wordnet_dataset(settings.services.cache_dir, sizes, nq, progress)
        except MissingPrerequisite as exc:
            skipped.append(f"wordnet: {exc}")
            console.print(f"[yellow]no WordNet embeddings, 384-d runs on synthetic vectors: {exc}")
    return _synthetic_dataset(f"synthetic-{dim}", max(sizes), dim, nq, sizes, progress)


def _wordnet_dataset(cache_dir: Path, sizes: list[int], nq: int, progress: Progress) -> Dataset:
    """The first ``WORDNET_QUERIES + max(sizes)`` glosses of a seeded order (the whole 101,000 when their
    embeddings are cached already): queries from the first 1,000, sizes as prefixes of the rest."""
    sentences = wordnet_sentences()
    order = np.random.default_rng(0).permutation(len(sentences))
    full = [sentences[i] for i in order[: min(len(sentences), WORDNET_BASE + WORDNET_QUERIES)]]
    take = min(len(full), WORDNET_QUERIES + max(sizes))
    chosen = full if _cache_path(full, cache_dir).is_file() else full[:take]
    grid = sorted({min(s, len(chosen) - WORDNET_QUERIES) for s in sizes})
    task = progress.add_task(f"embedding {len(chosen):,} WordNet glosses (cached)", total=len(chosen))
    holder: list[Any] = []

    def embed(texts: list[str]) -> np.ndarray:
        if not holder:
            from wavegraph.processors.embed_text import TextEmbedder

            holder.append(TextEmbedder())
        return np.asarray(holder[0].embed(texts))

    vecs = embed_cached(chosen, cache_dir, embed, on_progress=lambda m: progress.advance(task, m))
    base = _normalised(vecs[WORDNET_QUERIES:], "wordnet")
    return Dataset("wordnet", base, _normalised(vecs[:nq], "wordnet queries"), grid)


def _synthetic_dataset(name: str, n: int, dim: int, nq: int, sizes: list[int], progress: Progress) -> Dataset:
    task = progress.add_task(f"generating {n:,} synthetic {dim}-d vectors", total=n + nq)
    x = synthetic_clustered(n + nq, dim, seed=1, on_progress=lambda m: progress.advance(task, m))
    return Dataset(name, x[:n], x[n:], sizes)


def _file_dataset(
    data: Path, queries: Path | None, nq: int, sizes: Sequence[int] | None, progress: Progress
) -> Dataset:
    task = progress.add_task(f"loading {data.name}", total=2)
    base = load_vectors(data)
    progress.advance(task)
    if queries is not None:
        q = load_vectors(queries)
        if q.shape[1] != base.shape[1]:
            raise ValueError(f"{queries}: dimension {q.shape[1]}, the data has {base.shape[1]}")
    else:
        if len(base) <= nq:
            raise ValueError(f"{data}: {len(base)} vectors, need more than {nq} to hold queries out")
        pick = np.zeros(len(base), dtype=bool)
        pick[np.random.default_rng(0).choice(len(base), nq, replace=False)] = True
        base, q = base[~pick], base[pick]
    progress.advance(task)
    grid = sorted({s for s in sizes if s <= len(base)}) if sizes else [len(base)]
    return Dataset(data.stem, _normalised(base, str(data)), _normalised(q, "queries"), grid or [len(base)])


# ----------------------------------------------------------------------------------------------- measure


def _faiss() -> Any:
    import faiss

    return faiss


Search = Callable[[np.ndarray, int], np.ndarray]
_RUN = 20  # queries one index answers in a row in the latency runs


@dataclass
class _Case:
    row: dict[str, Any]
    search: Search  # -> int labels, for recall
    timed: Callable[[np.ndarray, int], Any]  # the index's own search call, as a caller makes it


def _bench_size(
    ds: Dataset, n: int, vector: VectorSettings, k: int, progress: Progress
) -> list[dict[str, Any]]:
    """Build every index over the first ``n`` rows of ``ds``, then measure them side by side."""
    faiss = _faiss()
    base = ds.base[:n]
    dim = base.shape[1]
    hp = _hybrid_params(vector, dim)
    task = progress.add_task(f"{ds.name} n={n:,}: building", total=4)
    flat = faiss.IndexFlatIP(dim)
    t0 = time.perf_counter()
    flat.add(base)
    flat_build = time.perf_counter() - t0
    truth = flat.search(ds.queries, 100)[1]

    def flat_search(q: np.ndarray, kk: int) -> np.ndarray:
        return np.asarray(flat.search(q, kk)[1])

    cases = [_case(ds, n, "exact flat", flat_search, flat_build, _index_bytes(flat), flat.search)]
    progress.advance(task)
    with tempfile.TemporaryDirectory(prefix="wavegraph-ann-") as tmp:
        hybrid, index = _hybrid_case(ds, n, hp, Path(tmp) / "hybrid")
        cases.append(hybrid)
        progress.advance(task)
        cases.append(_hnsw_flat_case(ds, n, hp))
        progress.advance(task)
        cases.append(_ivf_flat_case(ds, n, vector))
        progress.advance(task)
        for case in cases:
            _recalls(case, ds.queries, truth, k)
        rounds = 3 if len(ds.queries) <= 200 else 2
        _latencies(cases, ds.queries, k, progress, f"{ds.name} n={n:,}: single queries", rounds)
        _hybrid_memory(hybrid.row, index)  # after searching: what a serving index holds
        index.close()
    ours, exact, hnsw = cases[1].row, cases[0].row, cases[2].row
    ours["p95_vs_exact"] = round(ours["p95_ms"] / exact["p95_ms"], 3)
    ours["p95_vs_hnsw"] = round(ours["p95_ms"] / hnsw["p95_ms"], 3)
    ours["recall_vs_hnsw"] = round(ours["recall@10"] - hnsw["recall@10"], 4)
    return [c.row for c in cases]


def _case(
    ds: Dataset,
    n: int,
    name: str,
    search: Search,
    build_s: float,
    memory: int,
    timed: Callable[[np.ndarray, int], Any] | None = None,
) -> _Case:
    dim = ds.base.shape[1]
    row: dict[str, Any] = {
        "dataset": ds.name,
        "dim": dim,
        "n": n,
        "index": name,
        "build_s": round(build_s, 3),
    }
    row["memory_bytes"] = memory
    row["memory_vs_flat"] = round(memory / (n * dim * 4), 4)
    return _Case(row, search, timed or search)


def _hybrid_case(ds: Dataset, n: int, hp: HybridParams, directory: Path) -> tuple[_Case, HybridIndex]:
    index = HybridIndex(directory, hp)
    base = ds.base

    def feed() -> Iterator[tuple[str, str, str, np.ndarray]]:
        for i in range(n):
            yield ("bench", "vec", str(i), base[i])

    t0 = time.perf_counter()
    index.rebuild(feed())
    build = time.perf_counter() - t0

    def search(q: np.ndarray, kk: int) -> np.ndarray:
        out = np.full((len(q), kk), -1, dtype=np.int64)
        for i, hits in enumerate(index.search_batch("bench", q, kk)):
            out[i, : len(hits)] = [int(h.id) for h in hits]
        return out

    def timed(q: np.ndarray, kk: int) -> Any:
        return index.search_batch("bench", q, kk)

    case = _case(ds, n, f"hybrid HNSW{hp.hnsw_m}-SQ4+f16", search, build, 0, timed)
    path = index.path(n)
    case.row.update(path=path, graph=index.graph_codes)
    _hybrid_memory(case.row, index)
    if path == "hnsw":
        case.row["params"] = (
            f"M={hp.hnsw_m} efC={hp.ef_construction} ef={hp.graph_ef(10, 1.0, index.graph_codes or 'fp16')} "
            f"k'={hp.candidates(10)}"
        )
    elif n < hp.hnsw_threshold:
        case.row["params"] = f"exact scan of the mapped float16 rows (n < threshold {hp.hnsw_threshold:,})"
    else:
        case.row["params"] = "exact scan of the mapped float16 rows (measured faster than its graph here)"
    return case, index


def _hybrid_memory(row: dict[str, Any], index: HybridIndex) -> None:
    mem = index.memory_bytes()
    row["memory_bytes"] = mem["resident"]
    row["memory_vs_flat"] = round(mem["resident"] / (row["n"] * row["dim"] * 4), 4)
    row.update(index_bytes=mem["index"], side_table_bytes=mem["side_table"], mapped_bytes=mem["mapped_file"])


def _hnsw_flat_case(ds: Dataset, n: int, hp: HybridParams) -> _Case:
    faiss = _faiss()
    dim = ds.base.shape[1]
    index = faiss.IndexHNSWFlat(dim, hp.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = hp.ef_construction
    t0 = time.perf_counter()
    index.add(ds.base[:n])
    build = time.perf_counter() - t0

    params = {kk: faiss.SearchParametersHNSW(efSearch=max(hp.ef_search, kk)) for kk in (10, 100)}

    def timed(q: np.ndarray, kk: int) -> Any:
        p = params.get(kk) or faiss.SearchParametersHNSW(efSearch=max(hp.ef_search, kk))
        return index.search(q, kk, params=p)

    def search(q: np.ndarray, kk: int) -> np.ndarray:
        return np.asarray(timed(q, kk)[1])

    case = _case(ds, n, f"HNSW{hp.hnsw_m}-flat", search, build, _index_bytes(index), timed)
    case.row["params"] = f"M={hp.hnsw_m} efC={hp.ef_construction} ef={hp.ef_search}"
    return case


def _ivf_flat_case(ds: Dataset, n: int, vector: VectorSettings) -> _Case:
    faiss = _faiss()
    dim = ds.base.shape[1]
    base = ds.base[:n]
    lists = min(int(vector.ivfflat_lists), max(1, n // 39))
    probes = min(int(vector.probes), lists)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    index.train(base[np.random.default_rng(0).choice(n, min(n, lists * 256), replace=False)])
    index.add(base)
    build = time.perf_counter() - t0

    params = faiss.SearchParametersIVF(nprobe=probes)

    def timed(q: np.ndarray, kk: int) -> Any:
        return index.search(q, kk, params=params)

    def search(q: np.ndarray, kk: int) -> np.ndarray:
        return np.asarray(timed(q, kk)[1])

    case = _case(ds, n, f"IVF{lists}-flat", search, build, _index_bytes(index), timed)
    case.row["params"] = f"lists={lists} probes={probes}"
    return case


def _index_bytes(index: Any) -> int:
    return int(_faiss().serialize_index(index).nbytes)


def _recall(found: np.ndarray, truth: np.ndarray, at: int) -> float:
    hits = [len(set(f[:at].tolist()) & set(t[:at].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / at)


def _recalls(case: _Case, queries: np.ndarray, truth: np.ndarray, k: int) -> None:
    row = case.row
    row["recall@10"] = round(_recall(case.search(queries, 10), truth, 10), 4)
    row["recall@100"] = round(_recall(case.search(queries, 100), truth, 100), 4)
    if k not in (10, 100):
        row[f"recall@{k}"] = round(_recall(case.search(queries, k), truth, min(k, 100)), 4)


def _latencies(
    cases: list[_Case], queries: np.ndarray, k: int, progress: Progress, label: str, rounds: int
) -> None:
    """Steady-state single-query latency of every case, on one faiss thread: each case answers runs of
    ``_RUN`` consecutive queries (after one untimed query: the run before it may have been another
    case's cache-flushing scan), and the runs of all cases alternate in a seeded random order, ``rounds``
    passes over the queries, so a burst of load on the shared machine hits every case alike."""
    faiss = _faiss()
    runs = [queries[i : i + _RUN] for i in range(0, len(queries), _RUN)] * rounds
    task = progress.add_task(label, total=len(runs))
    rng = np.random.default_rng(0)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query, one thread: what a request handler gets
    times: list[list[float]] = [[] for _ in cases]
    try:
        for run in runs:
            for c in rng.permutation(len(cases)).tolist():
                search, out = cases[c].timed, times[c]
                search(run[-1][None], k)  # untimed: warm this case's caches
                for q in run:
                    one = q[None]
                    t0 = time.perf_counter()
                    search(one, k)
                    out.append(time.perf_counter() - t0)
            progress.advance(task)
    finally:
        faiss.omp_set_num_threads(threads)
    for case, t in zip(cases, times, strict=True):
        ms = np.asarray(t) * 1e3
        case.row.update(
            p50_ms=round(float(np.percentile(ms, 50)), 4),
            p95_ms=round(float(np.percentile(ms, 95)), 4),
            p99_ms=round(float(np.percentile(ms, 99)), 4),
            qps=round(float(1e3 / ms.mean()), 1),
        )
