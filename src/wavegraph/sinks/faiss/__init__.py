"""The FAISS hybrid index: exact search for small collections and small filters (a compiled scan of its
own), HNSW above (faiss); the float16 rows live in one memory-mapped file.

Composition (``n`` rows, dimension ``d``; thresholds in rows x dimensions, so they hold at any d)::

    n*d < 2 M (EXACT_WORK; 5,208 rows at 384-d, 2,551 at 784-d), or a small selective filter:
        query ──► exact inner product: the numba scan of :mod:`.scan` over the mapped float16 rows
                  (a filter: over its list of live rows); nothing resident but the side table
    2 M <= n*d < 16 M (FP16_GRAPH_WORK; 41,666 rows at 384-d, 20,408 at 784-d):
        query ──► IndexHNSWSQ(QT_fp16, M=20, efC=160), efSearch = 1.25 x ef: its distances are the
                  float16 rows' own, so no rerank (codes resident, <= 32 MB)
    beyond:
        query ──► IndexHNSWSQ(QT_4bit, M=20, efC=160), efSearch = 1.5 x ef, k′ = max(k_prime, 2k)
                  candidates ──► exact rerank of the k′ float16 rows of the mapped file, one C++ call:
                  faiss.IndexRefine(hnsw, mapped rows); 0.24 of flat float32 resident at 1 M x 384
    graph paths: the tenant/kind bitmap as a faiss IDSelector (none when the filter selects every row)
    once a graph exists: the scan and the graph are timed on this machine (:mod:`.calibrate`, ~25 ms
        at the threshold, once per graph) and the scan is kept while it is 1.2x faster, up to 1.5x the
        threshold at most (2,552 x 784 on a Zen 4 CPU with a 32 MB L3: the scan up to ~3,500 rows,
        where the threshold alone lost to exact flat by 1.2-1.4x in p95)

The row file is also a valid faiss ``IndexScalarQuantizer(QT_fp16)`` file (:mod:`.rows`): numpy appends to it,
faiss maps it with ``IO_FLAG_MMAP_IFC`` for the rerank and the exact scan reads it in place, so nothing is
cast in numpy (its float16 cast is scalar, ~3 ns a value: the former exact path took 22.8 ms on 9,800 x 784
where ``IndexFlatIP`` took 1.4 ms, and 75 µs of every HNSW search went to casting 64 rerank rows).

Why three tiers (measured, 2 shared cores, one faiss thread, steady state):

- Below the HNSW threshold an exact scan is as fast as a graph search and exact. faiss's flat scan of
  one query is bound by the latency of one dot product's chain of additions (and its float16 scan
  converts value by value: 0.25 ms against its float32 0.15 at 1,275 x 784); the kernel of
  :mod:`.scan` runs four rows' chains at once and converts float16 with the CPU's instruction, so it
  reads half the bytes and takes ~0.5 of faiss's float32 time (1,300 x 384: 0.037 vs 0.080 ms; 5,208
  x 384: 0.141 vs 0.266). That pays for the hybrid's Python around it (input checks, tenant lookup,
  building ``Hit`` results: ~17 µs warm, ~45 µs after another index's scan flushed the caches; since cut,
  measured after a scan at 637 x 384: ten hits 4.0 µs p50 instead of 7.9, and the separate numpy
  normalisation, 5 µs p50 / 11 µs p95, folded into the kernel: :func:`.scan.top_k`,
  :class:`.params.Hit`). With
  faiss's float32 kernel on a float32 copy the hybrid was 1.05-1.48x exact flat's p95 here.
- Above it, while HNSW-flat's float32 vectors fit in cache, 4-bit codes lose: decoding them costs more
  than a float16 load, and the 4-bit graph was 1.3-1.6x slower than HNSW20-flat (5,102 x 784, 10,416 x
  384). A float16 graph was 0.65-0.7x HNSW20-flat's latency at its recall (same distances to 5e-4).
- Past 16 M values float16 codes would hold 0.5 of flat float32 in RAM; 4-bit codes keep the index at
  0.24 of it (the budget below), and the graph, not the codes, is then what limits recall.
- At efSearch 64 the 4-bit graph trailed HNSW20-flat by 0.0004-0.002 recall@10 at 384-d (as much with
  a graph built from exact distances: the traversal costs it there), so both graphs search at 1.25 x
  ef (``sq4_ef_scale``, ``ef_scale``: ef 80). At 784-d the graph did cost it: links built from 4-bit
  distances gave 0.9981 at 40,816 x 784 (ef 96; HNSW20-flat 0.9991), the same codes on links built
  from float16 distances 0.9992. So the 4-bit index's links are always built from float16 distances
  (:meth:`State.train_hnsw`), which is also the faster build (44 vs 61 s there); on those links ef 80
  gives the recall ef 96 gave (0.9991-0.9992), and the 4-bit graph, which had to search at ef 96
  before, takes ~0.88x the time (p50 and p95).

``wavegraph bench ann --quick`` (``bench/results/ann_quick.json``; p95 of 600 single queries per
index, runs of 20 interleaved across the indexes; "vs ex." and "vs HNSW" are the hybrid's p95 over
exact flat's and HNSW20-flat's in the same run; recall@10 hybrid / HNSW20-flat)::

    =============  =======  =========  =====================  ======  =======  =============  ========
    set            n        path       p95 ms ours/exact/HNSW  vs ex.  vs HNSW  recall@10 o/H  RAM+map
    =============  =======  =========  =====================  ======  =======  =============  ========
    wordnet          2,604  exact      0.108  0.198  0.147      0.55     0.73  1.0000/1.0000     1+2MB
    wordnet         10,416  hnsw-fp16  0.336  1.111  0.278      0.30     1.21  0.9970/0.9970    12+8MB
    synthetic-784    1,275  exact      0.093  0.164  0.159      0.57     0.58  1.0000/0.9920     0+2MB
    synthetic-784    5,102  hnsw-fp16  0.368  0.816  0.383      0.45     0.96  0.9925/0.9880    10+8MB
    =============  =======  =========  =====================  ======  =======  =============  ========

Full run (``bench/results/ann_full.json``, 1,000 queries x 2 passes, ``--n 0``: no 1 M set)::

    =============  =======  =========  =====================  ======  =======  =============  ========
    set            n        path       p95 ms ours/exact/HNSW  vs ex.  vs HNSW  recall@10 o/H  RAM+map
    =============  =======  =========  =====================  ======  =======  =============  ========
    wordnet          1,302  exact      0.084  0.126  0.145      0.67     0.58  1.0000/0.9992     0+1MB
    wordnet          5,207  exact      0.220  0.447  0.203      0.49     1.08  0.9999/0.9978     1+4MB
    wordnet          5,209  hnsw-fp16  0.234  0.447  0.204      0.52     1.14  0.9995/0.9984     6+4MB
    wordnet         20,832  hnsw-fp16  0.396  2.672  0.321      0.15     1.23  0.9982/0.9973   24+16MB
    wordnet         83,328  hnsw-sq4   0.534  9.730  0.405      0.06     1.32  0.9976/0.9948   47+64MB
    wordnet        100,000  hnsw-sq4   0.698 14.150  0.521      0.05     1.34  0.9964/0.9939   57+77MB
    synthetic-784      637  exact      0.061  0.090  0.128      0.68     0.48  0.9999/0.9968     0+2MB
    synthetic-784    2,550  exact      0.227  0.434  0.318      0.52     0.71  1.0000/0.9874     1+4MB
    synthetic-784    2,552  exact      0.222  0.416  0.298      0.53     0.75  1.0000/0.9855     5+4MB
    synthetic-784   10,204  hnsw-fp16  0.636  2.764  0.568      0.23     1.12  0.9945/0.9919   20+16MB
    synthetic-784   40,816  hnsw-sq4   0.951 10.921  0.650      0.09     1.47  0.9991/0.9991   31+64MB
    =============  =======  =========  =====================  ======  =======  =============  ========

Read (AMD EPYC, AVX2, 2 shared cores): the hybrid never loses to brute force: its p95 is 0.49-0.68x exact
flat's below the HNSW threshold (the float16 scan) and 0.05-0.53x above it. Before the Python around the
scan was cut (msgspec hits, the query normalised inside the kernel) it was 1.03-1.27x on an AVX-512 machine,
where faiss's scan is faster; on this one the cut took 637 x 384 from 1.08x to 0.68-0.83x exact flat's p95
in a side-by-side script. Above the threshold it stays within 0.75-1.47x of HNSW20-flat's p95
(target 1.5) at equal or better recall@10 everywhere. The tightest margins are both at 40,816 x 784, the
4-bit graph at 784-d: p95 1.47x and recall +0.0000 (0.9991 both; it was 0.9985 with links built from 4-bit
distances, and 1.59x at ef 96). There the 4-bit decode is the cost: with faiss alone, not the hybrid, the
same graph and rerank took 1.18-1.40x HNSW-flat's p95 across four runs, and the Python around it (input
checks, normalisation, hits) ~35-50 µs more once the graph search has flushed the caches. p95 below the
threshold is set by the first query of each run of 20 (another index's scan ran before it: rows come from
DRAM), where reading half the bytes counts most. Ratios move by up to ~0.15 between runs on this shared
machine.

Memory per vector at 384-d (flat float32 = 1,536 B; the target at scale is <= 1/4 = 384 B): with 4-bit codes,
HNSW graph ~177 B (M=20: 40 level-0 links + upper levels + offsets) + SQ4 codes 192 B = **368 B in RAM (0.24
of flat)**, measured at 1 M; the float16 rows (768 B) stay in the mapped file. Smaller indexes hold more per
row but a bounded total: below the HNSW threshold nothing but the side table (the scan reads the mapped rows),
the float16 graph codes <= 32 MB (+ links). The side table (ids, key map, bitmaps) is ~200 B per row.
``memory_bytes()`` reports all of it at every size, resident and mapped separately, from the structures' sizes
(no serialisation).

Why HNSW-SQ4 + float16 rerank (100,000 MiniLM WordNet glosses, 300 queries, M=16, efC 80, ef = k′ = 64):

=========================================  ======  =========  ==========  ===========================
composition                                 RAM/v   recall@10  recall@100  note
=========================================  ======  =========  ==========  ===========================
HNSW16-SQ4 + exact f16 rerank (mmap)         336 B    0.988     0.975*      p50 0.23 ms; build 13 s
HNSW32-PQ48 + exact f16 rerank (mmap)        324 B    0.947     0.745       PQ48 candidates too coarse
HNSW16-PQ48 + IndexRefine(PQ192), ef 256     392 B    0.937     0.931       over budget, under 0.95
IVF1264(HNSW)-PQ48 + Refine(PQ192), np 64    279 B    0.914     0.897       p95 4.5 ms
=========================================  ======  =========  ==========  ===========================

(* with k′ = 128.) The ceiling of any in-RAM rerank is the recall of an exhaustive search over its codes:
SQ4 (192 B) 0.937, PQ192 0.952, SQ6 0.981, SQ8 0.994; SQ8 alone is the whole budget. So the rerank
reads exact float16 rows kept out of RAM (relative error 5e-4, no measurable recall loss), and the 4-bit
codes only have to put the true top 10 among k′ candidates. At 1,000,000 synthetic vectors M=20 /
efConstruction 160 gave recall@10 0.968 / 0.993 / 0.999 at ef 64 / 128 / 256 (build 670 s); hence the
defaults. With the links built from float16 distances (``bench/results/ann.json``, ``wavegraph bench ann``:
the full grid and the 1 M set, this machine): recall@10 0.975 at ef 80 against HNSW20-flat's 0.970 at ef
64, p95 0.96 ms (HNSW20-flat 0.77: 1.24x), index 0.24 of flat float32 (+ side table 0.13), build 599 s
(HNSW20-flat 699 s in the same run). At ef 96, on the earlier machine: 0.981, p95 1.34 ms against 0.97.

Ids and filters: faiss sees row numbers 0..n-1 (one per added vector, never reused); a side table maps them
to (tenant, kind, id) strings and back. Every search is limited to one tenant (and optionally one kind)
by a per-filter bitmap (``faiss.IDSelectorBitmap``, kept up to date incrementally, dead rows cleared)
given to HNSW (``SearchParametersHNSW(sel=...)``, efSearch raised by
``1/sqrt(fraction selected)`` up to ``max_ef``: recall@10 >= 0.97 down to 10 % selectivity). A filter
selecting at most ``exact_below`` rows and under ``graph_min_fraction`` (10 %) of the index is searched
exactly (graph search degrades when a few percent of the nodes qualify: 0.46 recall at 1 % with ef 64);
the exact scan reads the filter's list of rows (live ones only, by the alive column), so it costs per
selected row, not per row of the index. A filter that selects every row uses no selector and no list.

Adds and deletes: ``add`` appends (an existing (tenant, kind, id) is replaced: the old row becomes a
tombstone); ``delete`` tombstones (HNSW cannot remove nodes). Tombstones never surface (they are cleared
from every bitmap) and are dropped by ``compact()``, which rebuilds from the index's own float16 rows;
``needs_compaction`` turns true above ``max_tombstone_fraction``. ``rebuild(rows)`` replaces everything
from an iterable of (tenant, kind, id, vector) rows (the pgvector store, the source of truth, feeds it on
start). It trains the 4-bit quantizer on the first ``train_size`` rows, so feed rows in an order that
does not group one tenant or kind first. An index grown by ``add`` builds its float16 graph at the HNSW
threshold and rebuilds it over 4-bit codes (trained on the rows so far) when it reaches the second
threshold; both happen inside that ``add``, under the lock (seconds at 41,666 x 384 on 2 shared cores).
Training on few rows costs nothing measurable: 2,500 vs 100,000 training rows gave the same recall@10
at 100,000 rows.

Persistence: :mod:`wavegraph.sinks.faiss.state` (format 2; format 1 directories are converted on load).

GPU: faiss has no GPU HNSW, so the graph stage and the 64-row rerank stay on CPU. When faiss reports a
GPU (``faiss.get_num_gpus() > 0``, device "auto" or "gpu") exact scans go to ``faiss.knn_gpu`` over the
float16 rows through the same ``_exact`` call; otherwise faiss (and the small scan) on CPU.

Single queries call faiss's C++ entry point (``search_c``) into output arrays kept per index under its
lock, and build hits from two ``tolist`` calls: after another index's scan has flushed the caches each
numpy call costs 10-20 µs, which is the scale of a small search.

Thread safety: one lock serialises searches and writes. ``rebuild``/``compact`` build the new generation
outside the lock and swap it in; writes made meanwhile are not carried over (pause writers, or replay
them from PostgreSQL).

Modules: ``errors`` (InvalidVector, IndexCorrupt), ``params`` (HybridParams, Hit, input checks),
``rows`` (the mapped row file, bitmaps), ``scan`` (the exact scan below the HNSW threshold), ``state``
(one generation and its files), ``index`` (HybridIndex).
"""

from __future__ import annotations

from wavegraph.sinks.faiss.errors import IndexCorrupt, InvalidVector
from wavegraph.sinks.faiss.index import HybridIndex
from wavegraph.sinks.faiss.params import EXACT_WORK, Hit, HybridParams, Row
from wavegraph.sinks.faiss.state import FORMAT_VERSION

__all__ = [
    "EXACT_WORK",
    "FORMAT_VERSION",
    "Hit",
    "HybridIndex",
    "HybridParams",
    "IndexCorrupt",
    "InvalidVector",
    "Row",
]
