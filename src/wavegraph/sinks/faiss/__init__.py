"""The FAISS hybrid index: exact search for small collections, HNSW above, distances computed by faiss
(the small collections' scan by a compiled kernel of its own); the float16 rows live in one
memory-mapped file.

Composition (``n`` rows, dimension ``d``; thresholds in rows x dimensions, so they hold at any d)::

    n*d < 2 M (EXACT_WORK; 5,208 rows at 384-d, 2,551 at 784-d), or a small selective filter:
        query ──► exact inner product: the numba scan of :mod:`.scan` over a float32 copy of the
                  float16 rows (<= 8 MB); a small filter on a larger index: faiss's scan of the mapped
                  float16 file
    2 M <= n*d < 16 M (FP16_GRAPH_WORK; 41,666 rows at 384-d, 20,408 at 784-d):
        query ──► IndexHNSWSQ(QT_fp16, M=20, efC=160), efSearch = 1.25 x ef: its distances are the
                  float16 rows' own, so no rerank (codes resident, <= 32 MB)
    beyond:
        query ──► IndexHNSWSQ(QT_4bit, M=20, efC=160), efSearch = 1.5 x ef, k′ = max(k_prime, 2k)
                  candidates ──► exact rerank of the k′ float16 rows of the mapped file, one C++ call:
                  faiss.IndexRefine(hnsw, mapped rows); 0.24 of flat float32 resident at 1 M x 384
    every path: the tenant/kind bitmap as a faiss IDSelector (none when the filter selects every row;
    the small scan reads the filter's list of live rows instead)

The row file is also a valid faiss ``IndexScalarQuantizer(QT_fp16)`` file (:mod:`.rows`): numpy appends
to it, faiss maps it with ``IO_FLAG_MMAP_IFC`` for the rerank and filtered exact scans, so nothing is
cast in numpy (its float16 cast is scalar, ~3 ns a value: the former exact path took 22.8 ms on 9,800 x
784 where ``IndexFlatIP`` took 1.4 ms, and 75 µs of every HNSW search went to casting 64 rerank rows).

Why three tiers (measured, 2 shared cores, one faiss thread, steady state):

- Below the HNSW threshold an exact scan is as fast as a graph search and exact. A float32 scan of
  cache-resident rows beats a float16 one (which converts every value; faiss's: 0.15 vs 0.25 ms at
  1,275 x 784). faiss's own flat scan of one query is bound by the latency of one dot product's chain
  of additions; the kernel of :mod:`.scan` runs four rows' chains at once and takes 0.6-0.75 of its
  time (637 x 784 to 5,207 x 384), which pays for the hybrid's Python around it (input checks, tenant
  lookup, building ``Hit`` tuples: ~17 µs warm, more after another index's scan flushed the caches).
  With faiss's kernel the hybrid was 1.05-1.48x exact flat's p95 below the threshold.
- Above it, while HNSW-flat's float32 vectors fit in cache, 4-bit codes lose: decoding them costs more
  than a float16 load, and the 4-bit graph was 1.3-1.6x slower than HNSW20-flat (5,102 x 784, 10,416 x
  384). A float16 graph was 0.65-0.7x HNSW20-flat's latency at its recall (same distances to 5e-4).
- Past 16 M values float16 codes would hold 0.5 of flat float32 in RAM; 4-bit codes keep the index at
  0.24 of it (the budget below), and the graph, not the codes, is then what limits recall.
- At efSearch 64 the 4-bit graph trailed HNSW20-flat by 0.0004-0.002 recall@10 (as much with a graph
  built from exact distances: the traversal costs it, not the graph); ef 80 matched or beat it at
  1,000-50,000 rows except 40,816 x 784 (-0.0007), so the 4-bit graph searches at 1.5 x ef
  (``sq4_ef_scale``, ef 96) and the float16 graph, whose distances are HNSW-flat's, at 1.25 x ef.

``wavegraph bench ann --quick`` (``bench/results/ann_quick.json``; p95 of 600 single queries per
index, runs of 20 interleaved across the indexes; "vs ex." and "vs HNSW" are the hybrid's p95 over
exact flat's and HNSW20-flat's in the same run; recall@10 hybrid / HNSW20-flat)::

    =============  =======  =========  =====================  ======  =======  =============  ========
    set            n        path       p95 ms ours/exact/HNSW  vs ex.  vs HNSW  recall@10 o/H  RAM+map
    =============  =======  =========  =====================  ======  =======  =============  ========
    wordnet          2,604  exact       0.292  0.260  0.203    1.12    1.44    1.0000/1.0000  5+2MB
    wordnet         10,416  hnsw-fp16   0.467  1.777  0.378    0.26    1.24    0.9970/0.9970  12+8MB
    synthetic-784    1,275  exact       0.292  0.231  0.269    1.26    1.08    1.0000/0.9920  4+2MB
    synthetic-784    5,102  hnsw-fp16   0.736  1.694  0.660    0.43    1.11    0.9925/0.9880  10+8MB
    =============  =======  =========  =====================  ======  =======  =============  ========

Full run (``bench/results/ann_full.json``, 1,000 queries x 2 passes, ``--n 0``: no 1 M set)::

    =============  =======  =========  =====================  ======  =======  =============  ========
    set            n        path       p95 ms ours/exact/HNSW  vs ex.  vs HNSW  recall@10 o/H  RAM+map
    =============  =======  =========  =====================  ======  =======  =============  ========
    wordnet          1,302  exact       0.138  0.136  0.156    1.01    0.89    1.0000/0.9992  2+1MB
    wordnet          5,207  exact       0.647  0.584  0.258    1.11    2.50    0.9999/0.9978  9+4MB
    wordnet          5,209  hnsw-fp16   0.362  0.688  0.309    0.53    1.17    0.9995/0.9984  6+4MB
    wordnet         20,832  hnsw-fp16   0.508  3.576  0.421    0.14    1.21    0.9982/0.9973  24+16MB
    wordnet         83,328  hnsw-sq4    0.843 15.845  0.685    0.05    1.23    0.9976/0.9948  47+64MB
    wordnet        100,000  hnsw-sq4    0.855 18.378  0.696    0.05    1.23    0.9968/0.9939  57+77MB
    synthetic-784      637  exact       0.115  0.105  0.151    1.09    0.76    0.9999/0.9968  2+2MB
    synthetic-784    2,550  exact       0.598  0.592  0.449    1.01    1.33    1.0000/0.9874  9+4MB
    synthetic-784    2,552  hnsw-fp16   0.411  0.569  0.363    0.72    1.14    0.9918/0.9855  5+4MB
    synthetic-784   10,204  hnsw-fp16   0.708  3.092  0.672    0.23    1.05    0.9945/0.9919  20+16MB
    synthetic-784   40,816  hnsw-sq4    1.278 14.321  0.863    0.09    1.48    0.9985/0.9991  31+64MB
    =============  =======  =========  =====================  ======  =======  =============  ========

Read: at and above the HNSW threshold the hybrid beats exact flat by 1.4-20x and stays within 1.05-1.48x
of HNSW20-flat's p95 (target 1.5) at equal or better recall@10, except 40,816 x 784 (4-bit graph):
-0.0006 recall@10 at ef 80 and ef 96 alike (4-bit candidates over 784 dims, not the search depth; an
exact float16 scan there has recall@10 0.9999, so the rounding is not it). Below it the hybrid's p50 is
0.6-1.0x exact flat's (the kernel of :mod:`.scan`), its p95 1.01-1.26x: p95 is set by the first query of
each run of 20 (another index's scan ran before it), where the scan of 8 MB waits on DRAM for both
indexes alike (0.63 vs 0.68 ms at 5,207 x 384, kernel alone vs exact flat) and the hybrid's Python
(query check, hits: ~45 µs when cold, ~17 µs warm) is what remains. The target "never above exact flat"
is not met there.

Memory per vector at 384-d (flat float32 = 1,536 B; the target at scale is <= 1/4 = 384 B): with
4-bit codes, HNSW graph ~177 B (M=20: 40 level-0 links + upper levels + offsets) + SQ4 codes 192 B =
**368 B in RAM (0.24 of flat)**, measured at 1 M; the float16 rows (768 B) stay in the mapped file.
Smaller indexes hold more per row but a bounded total: the float32 copy <= 8 MB, the float16 graph codes
<= 32 MB (+ links). The side table (ids, key map, bitmaps) is ~200 B per row. ``memory_bytes()`` reports
all of it at every size, resident and mapped separately, from the structures' sizes (no serialisation).

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
defaults.

Ids and filters: faiss sees row numbers 0..n-1 (one per added vector, never reused); a side table maps them
to (tenant, kind, id) strings and back. Every search is limited to one tenant (and optionally one kind)
by a per-filter bitmap (``faiss.IDSelectorBitmap``, kept up to date incrementally, dead rows cleared),
given to the exact scan or to HNSW (``SearchParametersHNSW(sel=...)``, efSearch raised by
``1/sqrt(fraction selected)`` up to ``max_ef``: recall@10 >= 0.97 down to 10 % selectivity). A filter
selecting at most ``exact_below`` rows and under ``graph_min_fraction`` (10 %) of the index is searched
exactly (graph search degrades when a few percent of the nodes qualify: 0.46 recall at 1 % with ef 64);
the exact scan costs ~0.45 µs per selected row (random access) + ~3.5 ns per row for the bitmap,
the same as a float32 flat scan with the same selector. A filter that selects every row uses no selector.

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
