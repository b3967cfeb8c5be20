"""``wavegraph bench pgvector``: ivfflat and HNSW in PostgreSQL against exact search, through the store.

Datasets: the MiniLM WordNet set of the ANN bench (:mod:`wavegraph.bench.ann`: 100,000 glosses + 1,000
held-out queries) when its embedding cache exists (``<cache_dir>/ann``; this bench never spends the minutes
to embed it), else 100,000 of the ANN bench's seeded synthetic clustered vectors (+ 1,000 queries). ``n``
adds a synthetic set of ``n`` rows (``n=1_000_000`` is the at-scale run); ``nq`` caps the queries of every
set (the latency of ivfflat ``lists=100`` at 1M rows makes 1,000 queries per probes value minutes).
``data`` (+ ``queries``) runs on the user's ``.npy``/``.fvecs`` alone. ``quick``: 20,000 rows (the WordNet
subset when cached, else synthetic) and 200 queries, about 30 s.

``server="ephemeral"`` runs on a throwaway PostgreSQL (:mod:`wavegraph.devservices.ephemeral`) started with
the server settings ``wavegraph services up`` gives (``settings.postgres``: ``shared_buffers`` etc.,
``shared_buffers`` overridable): the shared dev server is not restarted for a bench. The server's settings
go into ``params.server``.

Each dataset goes into a dedicated table ``bench_pgvector`` (dropped before and after) through the store's
binary ``COPY`` backfill, with a progress bar. Ground truth is exact inner-product search over unit rows
(``faiss.IndexFlatIP``) in the same run. Then, one index at a time (built with a progress bar fed by
``pg_stat_progress_create_index``), for each ``storage`` (``vector``: float32 pages; ``halfvec``: an
expression index on ``embedding::halfvec(dim)``, half the pages, see :mod:`wavegraph.sinks.pgvector_ddl`):

- ivfflat with ``lists = settings.vector.ivfflat_lists`` (100, the headline) and ``probes`` in
  :data:`PROBES` (or ``probes``);
- above 100,000 rows also ivfflat with ``lists = rows / 1000`` (pgvector's advice up to 1M rows, ``vector``
  storage only) and ``probes`` in :data:`WIDE_PROBES`;
- HNSW (m = 16, ef_construction = 64, ``vector`` storage) with ``ef_search`` in :data:`EF_SEARCH` (one
  build: at 1M rows it is most of the run).

After each build the index is prewarmed (``prewarm``): ``pg_prewarm`` when the server has it (the bundled
binaries do not), else one query probing every list, which reads each list page through
``shared_buffers``. Every query goes through :meth:`PgVectorStore.nearest` one at a time (pool,
transaction, ``set_config``, the nearest-k SQL: what the search API pays), tenant-filtered. Rows report
``build_s``, ``index_bytes``, ``recall@k``, ``p50_ms``/``p95_ms``/``p99_ms``, ``qps`` (1000 / mean ms, one
client), and from :meth:`PgVectorStore.explain_nearest` on a few queries the pages really touched:
``scan_bytes`` (shared hit + read blocks x 8 kB), ``read_bytes`` (the part that missed ``shared_buffers``)
and ``temp_bytes`` (the candidates' sort spilling past ``work_mem``). ``params.bandwidth_bytes_per_s`` is
this machine's streaming read rate (numpy sum over a 2 GiB array, best of 3, in the same run);
``floor_ms = scan_bytes / bandwidth`` is the physical floor of a query that must read those pages once,
and ``p95_over_floor`` says how far the real p95 is above it.

``profile`` (``--profile``): after each ivfflat measurement, :data:`PROFILED` more queries run (untimed)
while Linux ``perf`` samples the pool's backends (:mod:`wavegraph.bench.perf_profile`); the row gains
``cpu_distance`` and ``cpu_sort`` (shares of the samples in the distance function and in sorting),
``us_per_candidate`` (the timed p50 over ``probes/lists`` of the rows, what ivfflat ranks), and
``params.datasets.<set>.profiles`` keeps each profile (groups and top symbols). Without perf,
``params.profile`` says why.

Headline: ``params.probes_needed`` is the smallest ``probes`` whose ivfflat ``lists=100`` recall@k reaches
0.9 on the largest dataset, for the storage with the lowest p95 there (``params.headline_storage``; every
storage's figure is in ``params.datasets``), and ``ratio = p95_ms at probes_needed / 30 ms`` (the issue's
target: below 1 meets it; ``None`` when no probes value reached 0.9). ``params.best`` is the configuration
with the lowest p95 among those reaching recall 0.9, over every index tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Literal

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wavegraph.bench.ann import (
    WORDNET_BASE,
    WORDNET_QUERIES,
    Dataset,
    embed_cached,
    load_vectors,
    synthetic_clustered,
    wordnet_sentences,
)
from wavegraph.bench.perf_profile import PerfRecording
from wavegraph.clients import pg_pool
from wavegraph.errors import MissingPrerequisite
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings
from wavegraph.sinks import pgvector_ddl as ddl
from wavegraph.sinks.pgvector import PgVectorStore, VectorRecord

__all__ = [
    "EF_SEARCH",
    "PROBES",
    "STORAGES",
    "floor_ms",
    "measure_bandwidth",
    "plan_bytes",
    "probes_needed",
    "run_pgvector_bench",
]

TABLE = "bench_pgvector"
TENANT = "bench"
PROBES = (1, 2, 4, 8, 10, 12, 14, 16, 20, 32)
WIDE_PROBES = (4, 8, 16, 32)
EF_SEARCH = (16, 32, 64, 128)
STORAGES: tuple[ddl.Storage, ...] = ("vector", "halfvec")
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
TARGET_RECALL = 0.9
TARGET_P95_MS = 30.0
QUICK_N = 20_000
FULL_SYNTHETIC_N = 100_000
QUICK_QUERIES = 200
WARMUP = 20
PROFILED = 100  # queries run again under perf with --profile (untimed)
EXPLAINED = 5  # queries whose EXPLAIN (ANALYZE, BUFFERS) gives the bytes scanned per query
BLOCK = 8192
BANDWIDTH_BYTES = 2 * 2**30
QUICK_BANDWIDTH_BYTES = 256 * 2**20
SERVER_SETTINGS = ("shared_buffers", "work_mem", "maintenance_work_mem", "effective_cache_size", "jit")
Server = Literal["shared", "ephemeral"]


def run_pgvector_bench(
    settings: Settings,
    quick: bool = False,
    out: Path | None = None,
    data: Path | None = None,
    queries: Path | None = None,
    k: int = 5,
    *,
    n: int | None = None,
    nq: int | None = None,
    hnsw: bool = True,
    table: str = TABLE,
    probes: Sequence[int] | None = None,
    storages: Sequence[ddl.Storage] = STORAGES,
    prewarm: bool = True,
    server: Server = "shared",
    shared_buffers: str | None = None,
    profile: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the bench, write the JSON report (``out``, default ``bench/results/pgvector.json``), print the
    table and return the report (see the module docstring). ``n`` adds a synthetic dataset of ``n`` rows;
    ``nq`` caps the queries per dataset; ``hnsw=False`` skips the HNSW builds (slow at a million rows);
    ``table`` is created and dropped; ``probes`` replaces :data:`PROBES` for ``lists=100``; ``storages``
    are the index storages to compare; ``server="ephemeral"`` runs on a throwaway server (with
    ``shared_buffers`` instead of ``settings.postgres.shared_buffers`` when given); ``profile`` samples the
    server's backends with ``perf`` during each ivfflat measurement (see the module docstring)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if nq is not None and nq < 1:
        raise ValueError(f"nq must be >= 1, got {nq}")
    if probes is not None and (not probes or min(probes) < 1):
        raise ValueError(f"probes must be positive integers, got {list(probes)}")
    if not storages or any(st not in STORAGES for st in storages):
        raise ValueError(f"storages must be among {STORAGES}, got {list(storages)}")
    if server not in ("shared", "ephemeral"):
        raise ValueError(f"server must be 'shared' or 'ephemeral', got {server!r}")
    if shared_buffers is not None and server != "ephemeral":
        raise ValueError("shared_buffers needs server='ephemeral': the shared server is not restarted")
    ddl.check_ident(table)
    options = _Options(
        quick=quick,
        k=k,
        hnsw=hnsw,
        probes=tuple(sorted(set(probes))) if probes else PROBES,
        storages=tuple(dict.fromkeys(storages)),
        prewarm=prewarm,
        profile=profile,
    )
    console = console or Console()
    if server == "ephemeral":
        pg = settings.postgres
        if shared_buffers is not None:
            pg = pg.model_validate({**pg.model_dump(), "shared_buffers": shared_buffers})
        settings = settings.model_copy(update={"postgres": pg})
    nq = min(nq or WORDNET_QUERIES, QUICK_QUERIES if quick else WORDNET_QUERIES)
    return asyncio.run(_run(settings, options, out, data, queries, n, nq, table, server, console))


class _Options:
    """What to measure, as the public function checked it."""

    def __init__(
        self,
        *,
        quick: bool,
        k: int,
        hnsw: bool,
        probes: tuple[int, ...],
        storages: tuple[ddl.Storage, ...],
        prewarm: bool,
        profile: bool = False,
    ) -> None:
        self.quick, self.k, self.hnsw, self.probes = quick, k, hnsw, probes
        self.storages, self.prewarm, self.profile = storages, prewarm, profile


async def _run(
    settings: Settings,
    opt: _Options,
    out: Path | None,
    data: Path | None,
    queries: Path | None,
    n: int | None,
    nq: int,
    table: str,
    server: Server,
    console: Console,
) -> dict[str, Any]:
    k = opt.k
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"quick": opt.quick, "k": k, "tenant_filter": True, "datasets": {}}
    params |= {"storages": list(opt.storages), "prewarm": opt.prewarm, "probes": list(opt.probes)}
    # other work on the machine inflates every latency alike: the 1-minute load average says how much
    params["load_average_1m"] = {"start": round(os.getloadavg()[0], 2)}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        datasets = _datasets(settings, opt.quick, data, queries, n, nq, progress, params)
        task = progress.add_task("memory bandwidth (numpy sum, best of 3)", total=1)
        bandwidth = measure_bandwidth(QUICK_BANDWIDTH_BYTES if opt.quick else BANDWIDTH_BYTES)
        progress.advance(task)
        params["bandwidth_bytes_per_s"] = round(bandwidth)
        async with contextlib.AsyncExitStack() as stack:
            if server == "ephemeral":
                from wavegraph.devservices.ephemeral import ephemeral

                task = progress.add_task("starting a throwaway PostgreSQL", total=1)
                settings = await stack.enter_async_context(ephemeral(settings, "postgres"))
                progress.advance(task)
            pool = await pg_pool(settings.postgres, max_size=2)
            stack.push_async_callback(pool.close)
            params["server"] = {"kind": server} | {
                name: await pool.fetchval(f"SHOW {name}") for name in SERVER_SETTINGS
            }
            has_prewarm = await pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_prewarm')"
            )
            params["prewarm_method"] = (
                None if not opt.prewarm else "pg_prewarm" if has_prewarm else "full_probe"
            )
            for ds in datasets:
                vector = settings.vector.model_copy(update={"dim": ds.base.shape[1]})
                bench_settings = settings.model_copy(update={"vector": vector})
                ctx = _Context(
                    bench_settings, pool, table, opt, progress, bandwidth, params["prewarm_method"]
                )
                found, info = await _bench_dataset(ctx, ds)
                rows.extend(found)
                params["datasets"][ds.name] = info
                if ctx.profile_note:
                    params["profile"] = ctx.profile_note
    params["load_average_1m"]["end"] = round(os.getloadavg()[0], 2)
    largest = max(datasets, key=lambda ds: len(ds.base)).name
    headline = params["datasets"][largest]
    params["headline_dataset"] = largest
    for key in ("headline_storage", "probes_needed", "p95_ms_at_probes_needed", "best"):
        params[key] = headline[key]
    params["ratio"] = f"p95 ms at probes_needed / {TARGET_P95_MS:g} ms target (recall@{k} >= {TARGET_RECALL})"
    ratio = headline["p95_ms_at_probes_needed"]
    report = build_report("pgvector", params, rows, None if ratio is None else ratio / TARGET_P95_MS)
    write_report(report, out, console)
    return report


class _Context:
    """One dataset's stores (one per storage, same table and pool) and the run's options."""

    def __init__(
        self,
        settings: Settings,
        pool: Any,
        table: str,
        opt: _Options,
        progress: Progress,
        bandwidth: float,
        prewarm_method: str | None,
    ) -> None:
        self.opt, self.progress, self.bandwidth, self.prewarm_method = (
            opt,
            progress,
            bandwidth,
            prewarm_method,
        )
        self.stores = {
            st: PgVectorStore(settings, table=table, pool=pool, index_storage=st) for st in STORAGES
        }
        self.store = self.stores["vector"]
        self.profiles: dict[str, Any] = {}  # label -> perf profile of the backends (``--profile``)
        self.profile_note: str | None = None  # why there is no profile


# ------------------------------------------------------------------------------------------ pure helpers


def measure_bandwidth(nbytes: int = BANDWIDTH_BYTES, repeats: int = 3) -> float:
    """This machine's streaming read rate in bytes/s: the best of ``repeats`` sums over an ``nbytes``
    float64 array (one core, like one PostgreSQL backend scanning pages)."""
    if nbytes < 8 or repeats < 1:
        raise ValueError(f"need nbytes >= 8 and repeats >= 1, got {nbytes} and {repeats}")
    x = np.ones(nbytes // 8, dtype=np.float64)
    best = math.inf
    for _ in range(repeats):
        started = perf_counter_ns()
        float(x.sum())
        best = min(best, (perf_counter_ns() - started) / 1e9)
    return x.nbytes / max(best, 1e-9)


def floor_ms(scan_bytes: float, bandwidth_bytes_per_s: float) -> float:
    """The time to stream ``scan_bytes`` once at ``bandwidth_bytes_per_s``, in ms: no query that must read
    those pages can be faster."""
    if bandwidth_bytes_per_s <= 0 or scan_bytes < 0:
        raise ValueError(f"need bandwidth > 0 and bytes >= 0, got {bandwidth_bytes_per_s}, {scan_bytes}")
    return scan_bytes / bandwidth_bytes_per_s * 1000.0


def plan_bytes(plan: Mapping[str, Any]) -> dict[str, int]:
    """``scan_bytes`` / ``read_bytes`` / ``temp_bytes`` of one ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``
    top entry (``{"Plan": ...}``). A node's buffer counts include its children's, so the largest node
    count in the tree is the query's (taking the top node alone would miss a CTE counted beside it)."""
    if "Plan" not in plan:
        raise ValueError("not an EXPLAIN (FORMAT JSON) entry: no 'Plan'")
    hit = read = temp = 0
    stack = [plan["Plan"]]
    while stack:
        node = stack.pop()
        hit = max(hit, int(node.get("Shared Hit Blocks", 0)))
        read = max(read, int(node.get("Shared Read Blocks", 0)))
        temp = max(temp, int(node.get("Temp Written Blocks", 0)))
        stack.extend(node.get("Plans", ()))
    return {"scan_bytes": (hit + read) * BLOCK, "read_bytes": read * BLOCK, "temp_bytes": temp * BLOCK}


def probes_needed(
    rows: Sequence[Mapping[str, Any]], lists: int, k: int, storage: str = "vector"
) -> Mapping[str, Any] | None:
    """The ivfflat row of ``lists`` and ``storage`` with the fewest probes whose recall@k reaches
    :data:`TARGET_RECALL` (``None`` if none does). Recall grows with probes only up to noise (a list
    scanned more finds a superset): the smallest passing value is taken, not the first after a dip."""
    key = f"recall@{k}"
    ok = [
        r
        for r in rows
        if r["index"] == "ivfflat"
        and r["lists"] == lists
        and r.get("storage", "vector") == storage
        and r[key] >= TARGET_RECALL
    ]
    return min(ok, key=lambda r: r["probes"]) if ok else None


# ---------------------------------------------------------------------------------------------- datasets


def _datasets(
    settings: Settings,
    quick: bool,
    data: Path | None,
    queries: Path | None,
    n: int | None,
    nq: int,
    progress: Progress,
    params: dict[str, Any],
) -> list[Dataset]:
    if data is not None:
        return [_file_dataset(data, queries, nq)]
    found: list[Dataset] = []
    wordnet = _cached_wordnet(settings.services.cache_dir)
    if wordnet is None:
        params["skipped"] = "wordnet: no cached MiniLM embeddings (run `wavegraph bench ann` once)"
    elif quick:
        found.append(Dataset("wordnet", wordnet.base[:QUICK_N], wordnet.queries[:nq]))
    else:
        found.append(Dataset("wordnet", wordnet.base, wordnet.queries[:nq]))
    if n is not None:
        found.append(_synthetic(n, nq, progress))
    elif not found:
        found.append(_synthetic(QUICK_N if quick else FULL_SYNTHETIC_N, nq, progress))
    return found


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.isfinite(x).all() or (norms == 0).any():
        raise ValueError(f"{what}: vectors must be finite and non-zero")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _cached_wordnet(cache_dir: Path) -> Dataset | None:
    """The ANN bench's WordNet set if its embeddings are cached (the same selection and order)."""
    try:
        sentences = wordnet_sentences()
    except MissingPrerequisite:
        return None
    order = np.random.default_rng(0).permutation(len(sentences))
    chosen = [sentences[i] for i in order[: min(len(sentences), WORDNET_BASE + WORDNET_QUERIES)]]

    def refuse(_: list[str]) -> np.ndarray:
        raise LookupError("not cached")

    try:
        vecs = embed_cached(chosen, cache_dir, refuse)
    except LookupError:
        return None
    return Dataset(
        "wordnet", _unit(vecs[WORDNET_QUERIES:], "wordnet"), _unit(vecs[:WORDNET_QUERIES], "wordnet")
    )


def _synthetic(n: int, nq: int, progress: Progress) -> Dataset:
    task = progress.add_task(f"generating {n:,} synthetic vectors", total=n + nq)
    x = synthetic_clustered(n + nq, seed=1, on_progress=lambda m: progress.advance(task, m))
    return Dataset("synthetic", x[:n], x[n:])


def _file_dataset(data: Path, queries: Path | None, nq: int) -> Dataset:
    base = load_vectors(data)
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
    return Dataset(data.stem, _unit(base, str(data)), _unit(q, str(queries or data)))


# ----------------------------------------------------------------------------------------------- measure


async def _bench_dataset(ctx: _Context, ds: Dataset) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import faiss

    store, progress, opt, k = ctx.store, ctx.progress, ctx.opt, ctx.opt.k
    n, dim = ds.base.shape
    lists = store.settings.vector.ivfflat_lists
    info: dict[str, Any] = {"n": n, "queries": len(ds.queries), "dim": dim, "lists": lists}
    task = progress.add_task(f"{ds.name}: exact ground truth", total=1)
    flat = faiss.IndexFlatIP(dim)
    flat.add(ds.base)
    _, truth = flat.search(ds.queries, k)
    progress.advance(task)

    await ddl.drop_table(store.pool, store.table)
    await ddl.create_table(store.pool, store.table, dim)
    rows: list[dict[str, Any]] = []
    try:
        task = progress.add_task(f"{ds.name}: COPY {n:,} rows into {store.table}", total=n)
        started = time.perf_counter()
        await store.bulk_load(
            (VectorRecord(TENANT, "doc", str(i), v) for i, v in enumerate(ds.base)),
            batch_size=10_000,
            on_progress=lambda m: progress.advance(task, m),
        )
        info["load_s"] = round(time.perf_counter() - started, 3)
        info["table_bytes"] = await store.pool.fetchval(
            "SELECT pg_total_relation_size($1::regclass)", store.table
        )
        base_row = {"dataset": ds.name, "n": n}

        for storage in opt.storages:
            rows += await _ivfflat(ctx, ds, truth, lists, opt.probes, storage, base_row)
        if n // 1000 > lists:  # pgvector's advice for up to 1M rows: lists = rows / 1000
            rows += await _ivfflat(ctx, ds, truth, n // 1000, WIDE_PROBES, "vector", base_row)

        if opt.hnsw:
            mem = f"{min(4096, max(64, math.ceil(n * 2500 / 2**20)))}MB"
            info["hnsw_maintenance_work_mem"] = mem
            name, build_s = await _build(
                store, ds.name, "hnsw", progress, m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, mem=mem
            )
            size = await _index_bytes(store, name)
            for ef in EF_SEARCH if n <= FULL_SYNTHETIC_N else (*EF_SEARCH[1:], 2 * EF_SEARCH[-1]):
                stats = await _measure(ctx, "vector", ds, truth, f"hnsw ef_search={ef}", ef_search=ef)
                rows.append(
                    {**base_row, "index": "hnsw", "storage": "vector", "lists": None, "probes": None}
                    | {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": ef, **stats}
                    | {"build_s": build_s, "maintenance_work_mem": mem, "index_bytes": size}
                    | {"prewarmed": False}
                )
    finally:
        await ddl.drop_table(store.pool, store.table)
    _summarise(rows, k, info, opt.storages)
    if ctx.profiles:
        info["profiles"] = ctx.profiles
    return rows, info


async def _ivfflat(
    ctx: _Context,
    ds: Dataset,
    truth: np.ndarray,
    lists: int,
    probes_values: tuple[int, ...],
    storage: ddl.Storage,
    base_row: dict[str, Any],
) -> list[dict[str, Any]]:
    # pgvector's k-means keeps 50 sample rows per list and an Elkan lower bound per (sample, list) in
    # maintenance_work_mem: ~280 MB for 1,000 lists at 384-d (the server default is 64 MB). More than
    # that buys nothing: the sample size is fixed by lists, the assignment pass streams the table.
    store = ctx.stores[storage]
    samples = lists * 50
    need = samples * (4 * ds.base.shape[1] + 8) + samples * lists * 4 + lists * lists * 4
    mem = f"{max(64, math.ceil(need * 1.25 / 2**20))}MB"
    name, build_s = await _build(
        store, ds.name, "ivfflat", ctx.progress, lists=lists, mem=mem, storage=storage, dim=store.dim
    )
    size = await _index_bytes(store, name)
    if ctx.opt.prewarm:
        await _prewarm(ctx, store, name, lists, ds.queries[0])
    rows: list[dict[str, Any]] = []
    for probes in probes_values:
        label = f"ivfflat {storage} lists={lists} probes={probes}"
        stats = await _measure(ctx, storage, ds, truth, label, probes=probes, lists=lists)
        rows.append(
            {**base_row, "index": "ivfflat", "storage": storage, "lists": lists, "probes": probes}
            | {"m": None, "ef_construction": None, "ef_search": None, **stats, "build_s": build_s}
            | {"maintenance_work_mem": mem, "index_bytes": size, "prewarmed": ctx.opt.prewarm}
        )
    await ddl.drop_index(store.pool, name)
    return rows


async def _prewarm(ctx: _Context, store: PgVectorStore, name: str, lists: int, query: np.ndarray) -> None:
    """Load the index into ``shared_buffers``: ``pg_prewarm`` if the server has it, else one query
    probing every list (it reads each list page once; the bundled binaries lack pg_prewarm)."""
    if ctx.prewarm_method == "pg_prewarm":
        async with store.pool.acquire() as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            await conn.fetchval("SELECT pg_prewarm($1::regclass)", name)
    else:
        await store.nearest(TENANT, query, ctx.opt.k, probes=lists)


def _summarise(
    rows: list[dict[str, Any]], k: int, info: dict[str, Any], storages: tuple[ddl.Storage, ...]
) -> None:
    key = f"recall@{k}"
    per: dict[str, Any] = {}
    for storage in storages:
        first = probes_needed(rows, info["lists"], k, storage)
        per[storage] = None if first is None else {name: first[name] for name in ("probes", key, "p95_ms")}
    info["by_storage"] = per
    reached = {st: v for st, v in per.items() if v is not None}
    top = min(reached, key=lambda st: reached[st]["p95_ms"]) if reached else None
    info["headline_storage"] = top
    info["probes_needed"] = None if top is None else reached[top]["probes"]
    info["p95_ms_at_probes_needed"] = None if top is None else reached[top]["p95_ms"]
    good = [r for r in rows if r[key] >= TARGET_RECALL]
    best = min(good, key=lambda r: r["p95_ms"]) if good else None
    info["best"] = (
        None
        if best is None
        else {
            "index": best["index"],
            "storage": best["storage"],
            "lists": best["lists"],
            "probes": best["probes"],
            "ef_search": best["ef_search"],
            key: best[key],
            "p95_ms": best["p95_ms"],
        }
    )


async def _index_bytes(store: PgVectorStore, name: str) -> int:
    return int(await store.pool.fetchval("SELECT pg_relation_size($1::regclass)", name))


async def _build(
    store: PgVectorStore,
    dataset: str,
    method: ddl.IndexMethod,
    progress: Progress,
    *,
    lists: int = 100,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    mem: str | None = None,
    storage: ddl.Storage = "vector",
    dim: int | None = None,
) -> tuple[str, float]:
    """Build an index while a progress bar follows ``pg_stat_progress_create_index``."""
    task = progress.add_task(f"{dataset}: building {method} ({storage})", total=None)
    build = asyncio.create_task(
        ddl.create_index(
            store.pool,
            store.table,
            method,
            lists=lists,
            m=m,
            ef_construction=ef_construction,
            maintenance_work_mem=mem,
            storage=storage,
            dim=dim,
        )
    )
    try:
        while not build.done():
            await asyncio.wait({build}, timeout=0.5)
            row = await store.pool.fetchrow(
                "SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                "FROM pg_stat_progress_create_index WHERE relid = $1::regclass",
                store.table,
            )
            if row is not None:
                done, total = row["tuples_done"], row["tuples_total"]
                if not total:
                    done, total = row["blocks_done"], row["blocks_total"]
                progress.update(
                    task,
                    description=f"{dataset}: building {method} ({row['phase']})",
                    completed=done,
                    total=total or None,
                )
        name, seconds = await build
    finally:
        if not build.done():
            build.cancel()
    progress.update(task, description=f"{dataset}: built {method} in {seconds:.1f} s", total=1, completed=1)
    return name, round(seconds, 3)


async def _measure(
    ctx: _Context,
    storage: ddl.Storage,
    ds: Dataset,
    truth: np.ndarray,
    label: str,
    *,
    probes: int | None = None,
    ef_search: int | None = None,
    lists: int | None = None,
) -> dict[str, float | None]:
    """Recall@k and single-query latency of ``len(ds.queries)`` sequential queries (after a warm-up), then
    the pages the first :data:`EXPLAINED` queries touch (untimed) and the floor they imply; with
    ``--profile``, an ivfflat measurement (``lists`` given) also gets the backends' CPU profile."""
    store, k = ctx.stores[storage], ctx.opt.k
    for q in ds.queries[:WARMUP]:
        await store.nearest(TENANT, q, k, probes=probes, ef_search=ef_search)
    task = ctx.progress.add_task(f"{ds.name}: {label}", total=len(ds.queries))
    latencies = np.empty(len(ds.queries))
    found = 0
    clock: Callable[[], float] = time.perf_counter
    for i, (q, want) in enumerate(zip(ds.queries, truth, strict=True)):
        started = clock()
        hits = await store.nearest(TENANT, q, k, probes=probes, ef_search=ef_search)
        latencies[i] = (clock() - started) * 1000.0
        found += len({int(h.id) for h in hits} & set(want.tolist()))
        ctx.progress.advance(task)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    pages = [
        plan_bytes(await store.explain_nearest(TENANT, q, k, probes=probes, ef_search=ef_search))
        for q in ds.queries[:EXPLAINED]
    ]
    scanned = {name: round(float(np.mean([p[name] for p in pages]))) for name in pages[0]}
    floor = floor_ms(scanned["scan_bytes"], ctx.bandwidth)
    profiled: dict[str, float | None] = {}
    if ctx.opt.profile and lists is not None and probes is not None:
        profiled = await _profile(ctx, storage, ds, label, probes, lists, float(p50))
    return {
        f"recall@{k}": round(found / truth.size, 4),
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
        "qps": round(1000.0 / float(latencies.mean()), 1),
        **scanned,
        "floor_ms": round(floor, 3),
        "p95_over_floor": round(float(p95) / floor, 2) if floor > 0 else None,
        **profiled,
    }


async def _profile(
    ctx: _Context, storage: ddl.Storage, ds: Dataset, label: str, probes: int, lists: int, p50_ms: float
) -> dict[str, float | None]:
    """The server's CPU profile (``perf`` on the pool's backends) over :data:`PROFILED` more queries,
    untimed; returns the row's columns (shares of the distance function and of the sort, µs per
    candidate at the timed p50) and keeps the whole profile in ``ctx.profiles[label]``."""
    store, k = ctx.stores[storage], ctx.opt.k
    pids = await _backend_pids(store.pool)
    queries = ds.queries[:PROFILED]
    async with PerfRecording(pids) as recording:
        for q in queries:
            await store.nearest(TENANT, q, k, probes=probes)
    if recording.profile is None:
        ctx.profile_note = recording.unavailable
        return {}
    # ivfflat computes the distance to every row of the probed lists and sorts them all: ~probes/lists
    # of the rows (lists are k-means clusters, not all the same size)
    candidates = min(probes, lists) / lists * len(ds.base)
    ctx.profiles[label] = recording.profile.as_json() | {
        "queries": len(queries),
        "pids": list(recording.pids),
        "candidates_per_query": round(candidates),
    }
    groups = recording.profile.groups
    return {
        "cpu_distance": round(groups.get("distance", 0.0), 3),
        "cpu_sort": round(groups.get("sort", 0.0), 3),
        "us_per_candidate": round(p50_ms * 1000.0 / candidates, 3),
    }


async def _backend_pids(pool: Any) -> list[int]:
    """The PostgreSQL backend pid of every connection the pool can hold (all of them opened)."""
    conns = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        return [int(await conn.fetchval("SELECT pg_backend_pid()")) for conn in conns]
    finally:
        for conn in conns:
            await pool.release(conn)
