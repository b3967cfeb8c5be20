"""``HybridIndex``: the multi-tenant FAISS index (see :mod:`wavegraph.sinks.faiss` for the design)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from wavegraph.errors import MissingPrerequisite
from wavegraph.sinks.faiss import calibrate
from wavegraph.sinks.faiss.errors import InvalidVector, load_faiss
from wavegraph.sinks.faiss.params import Hit, HybridParams, Row, as_matrix, as_unit_matrix, check_name
from wavegraph.sinks.faiss.scan import top_k
from wavegraph.sinks.faiss.state import CHUNK, State

__all__ = ["HybridIndex"]


class HybridIndex:
    """Multi-tenant cosine-similarity index over (tenant, kind, id) keys; see the package docstring.

    Open one with ``HybridIndex.open(directory, params)`` (loads a saved index or starts an empty one).
    ``index.params`` may be replaced between calls to change the search-time fields (``k_prime``,
    ``ef_search``, ``ef_scale``, ``max_ef``, ``exact_below``, ``graph_min_fraction``); the others take
    effect at the next ``rebuild``.
    """

    def __init__(self, directory: Path, params: HybridParams | None = None) -> None:
        """Start an empty index in ``directory`` (created if needed; an existing manifest is an error)."""
        self.params = params or HybridParams()
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "manifest.json").exists():
            raise FileExistsError(f"{directory} already holds an index: use HybridIndex.open() or load()")
        self._lock = threading.RLock()
        self._state = State.create(directory, 0, self.params)
        self._refine: tuple[Any, Any, Any] | None = None  # (view, hnsw, faiss.IndexRefine over them)
        self._param_cache: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
        self._out: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # see _search
        self._limit: tuple[Any, int] | None = None  # (graph, rows below which the scan is faster)
        self._init_device()

    @classmethod
    def open(cls, directory: Path, params: HybridParams | None = None) -> HybridIndex:
        """Load the index saved in ``directory``, or start an empty one there."""
        if (directory / "manifest.json").exists():
            return cls.load(directory, params)
        return cls(directory, params)

    @classmethod
    def load(cls, directory: Path, params: HybridParams | None = None) -> HybridIndex:
        """Load the last ``save()`` of ``directory``. Search-time ``params`` (k′, ef, ...) may differ."""
        self = cls.__new__(cls)
        self._lock = threading.RLock()
        self._state = State.load(directory, params)
        self._refine = None
        self._param_cache = {}
        self._out = {}
        self.params = self._state.params
        self._limit = None
        self._init_device()
        with self._lock:
            self._time_paths()
        return self

    def _init_device(self) -> None:
        faiss = load_faiss()
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if self.params.device == "gpu" and gpus == 0:
            raise MissingPrerequisite(
                "device 'gpu' needs faiss-gpu and a CUDA GPU: pip install 'wavegraph[gpu]'"
            )
        self._gpu_res: Any = None
        if gpus > 0 and self.params.device != "cpu":
            self._gpu_res = faiss.StandardGpuResources()

    # ------------------------------------------------------------------------------------------ writes

    def add(self, rows: Iterable[Row]) -> int:
        """Add (or replace) ``(tenant, kind, id, vector)`` rows; returns how many were taken in."""
        total = 0
        batch: dict[tuple[str, str], tuple[list[str], list[np.ndarray]]] = {}
        pending = 0
        for tenant, kind, key, vector in rows:
            keys, vecs = batch.setdefault((tenant, kind), ([], []))
            keys.append(key)
            vecs.append(vector)
            pending += 1
            if pending >= CHUNK:
                total += self._flush_batch(batch)
                batch, pending = {}, 0
        return total + self._flush_batch(batch)

    def _flush_batch(self, batch: dict[tuple[str, str], tuple[list[str], list[np.ndarray]]]) -> int:
        n = 0
        for (tenant, kind), (keys, vecs) in batch.items():
            self.add_batch(tenant, kind, keys, vecs)
            n += len(keys)
        return n

    def add_batch(self, tenant: str, kind: str, ids: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Add (or replace) ``len(ids)`` vectors of one tenant and kind; ``vectors`` is ``(n, dim)``."""
        check_name(tenant, "tenant")
        check_name(kind, "kind")
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of strings, not one string")
        keys = [str(i) for i in ids]
        if not keys:
            return
        mat = as_unit_matrix(vectors, self.params.dim, f"add({tenant!r}, {kind!r})")
        if len(mat) != len(keys):
            raise InvalidVector(f"add: {len(keys)} ids but {len(mat)} vectors")
        with self._lock:
            self._state.append(tenant, kind, keys, mat)

    def delete(self, tenant: str, kind: str, ids: Iterable[str]) -> int:
        """Remove the given keys (tombstones, see the package docstring); returns how many existed."""
        if isinstance(ids, str):
            raise TypeError("ids must be an iterable of strings, not one string")
        with self._lock:
            st = self._state
            t, k = st.tenant_index.get(tenant), st.kind_index.get(kind)
            if t is None or k is None:
                return 0
            removed = 0
            for key in ids:
                row = st.lookup.get((t, k, key))
                if row is not None:
                    st.kill(row)
                    removed += 1
            return removed

    # ------------------------------------------------------------------------------------------- reads

    def search(self, tenant: str, vector: Any, k: int = 10, kind: str | None = None) -> list[Hit]:
        """The ``k`` nearest live vectors of ``tenant`` (and ``kind``) by cosine similarity, best first."""
        if np.ndim(vector) == 2 and np.shape(vector)[0] != 1:
            raise InvalidVector(
                f"search() takes one vector, got shape {np.shape(vector)}: use search_batch()"
            )
        return self.search_batch(tenant, vector, k, kind)[0]

    def search_batch(
        self, tenant: str, vectors: Any, k: int = 10, kind: str | None = None
    ) -> list[list[Hit]]:
        """``search`` for each row of ``vectors`` (``(n, dim)``); one list of hits per query."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        queries = as_matrix(vectors, self.params.dim, "query")  # normalised below, by the path taken
        with self._lock:
            st = self._state
            t = st.tenant_index.get(tenant)
            kn = -1 if kind is None else st.kind_index.get(kind)
            selected = 0 if t is None or kn is None else st.counts.get((t, kn), 0)
            if selected == 0:
                as_unit_matrix(queries, self.params.dim, "query")  # a bad query is refused all the same
                return [[] for _ in range(len(queries))]
            assert t is not None and kn is not None
            sub = None if selected == st.count else st.subset(t, kn)  # None: every row is selected
            if self.path(selected) == "exact":
                cands = None if sub is None else sub.ids.view
                scores, labels = self._exact(st, queries, k, cands, normalised=False)
            else:
                sel = None if sub is None else sub.selector()
                queries = as_unit_matrix(queries, self.params.dim, "query")
                scores, labels = self._graph(st, queries, k, sel, selected / st.count)
            return self._hits(st, tenant, kind, scores, labels)

    def path(self, selected: int) -> str:
        """``"exact"`` or ``"hnsw"``: how a search over ``selected`` live rows is answered.

        Exact when there is no HNSW stage yet, when the rows are fewer than the HNSW threshold (a scan
        is cheaper), when at most ``exact_below`` rows and under ``graph_min_fraction`` of the index
        are selected (a filtered graph search loses recall there), or (``params.calibrate``) while the
        scan was measured faster than the graph on this machine (:meth:`_exact_limit`)."""
        p, st = self.params, self._state
        if st.hnsw is None or selected < p.hnsw_threshold:
            return "exact"
        if selected <= p.exact_below and selected < p.graph_min_fraction * st.count:
            return "exact"
        if p.calibrate and selected < self._exact_limit(st):
            return "exact"
        return "hnsw"

    def _time_paths(self) -> None:
        """Time the current graph against the scan now (``rebuild``, ``load``), not at the first query."""
        if self.params.calibrate:
            self._exact_limit(self._state)

    def _exact_limit(self, st: State) -> int:
        """Rows below which the scan beats this state's graph here: measured once per graph (at the
        first search that asks, or at the end of ``rebuild``/``load``), see :mod:`.calibrate`."""
        cached = self._limit
        if cached is not None and cached[0] is st.hnsw:
            return cached[1]
        limit = 0
        cap = int(calibrate.MAX_GROWTH * self.params.hnsw_threshold)
        if st.hnsw is not None and st.count < cap:
            queries = calibrate.probe_queries(st.store.rows)
            measured = calibrate.exact_limit(
                st.count,
                lambda q: self._exact(st, q, 10, None),
                lambda q: self._graph(st, q, 10, None, 1.0),
                queries,
            )
            limit = min(measured, cap)
        self._limit = (st.hnsw, limit)
        return limit

    def _exact(
        self,
        st: State,
        queries: np.ndarray,
        k: int,
        candidates: np.ndarray | None,
        *,
        normalised: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exhaustive inner product over the live rows among ``candidates`` (every row when ``None``).
        On CPU the compiled scan of the mapped float16 rows (:mod:`.scan`). On a GPU, ``faiss.knn_gpu``
        over the float16 rows (the live rows among ``candidates`` gathered first when filtered).
        ``normalised=False``: the queries are not unit length yet; the scan normalises them (and refuses
        a bad one), one fewer pass of numpy calls per query."""
        if self._gpu_res is None:
            alive = None if candidates is None else st.alive.view
            out = _outputs(len(queries), k, self._out)
            return top_k(st.store.bits, queries, k, candidates, alive, out, normalise=not normalised)
        if not normalised:
            queries = as_unit_matrix(queries, self.params.dim, "query")
        faiss = load_faiss()
        ids = None if candidates is None else candidates[st.alive.view[candidates]]
        rows = np.ascontiguousarray(st.store.rows if ids is None else st.store.rows[ids])
        kk = min(k, len(rows))
        dist, idx = faiss.knn_gpu(self._gpu_res, queries, rows, kk, metric=faiss.METRIC_INNER_PRODUCT)
        if ids is not None:
            idx = np.where(idx >= 0, ids[np.maximum(idx, 0)], -1)
        return dist, idx

    def _graph(
        self, st: State, queries: np.ndarray, k: int, sel: Any, fraction: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """HNSW search filtered by ``sel``. A float16 graph answers directly (its distances are the float16
        rows' own); a 4-bit graph gives k′ candidates reranked exactly on the mapped float16 rows:
        ``faiss.IndexRefine(hnsw, mapped rows)``, one C++ call for both stages."""
        p = self.params
        if st.graph_codes == "fp16":  # float16 codes: the graph's distances are the exact ones
            params = self._search_params(("fp16", p.graph_ef(k, fraction)), sel)
            return _search(st.hnsw, queries, k, params, self._out)
        view = st.store.faiss_view()
        cached = self._refine
        if cached is None or cached[0] is not view or cached[1] is not st.hnsw:
            cached = self._refine = (view, st.hnsw, load_faiss().IndexRefine(st.hnsw, view))
        params = self._search_params(("graph", p.graph_ef(k, fraction, "sq4"), p.candidates(k), k), sel)
        return _search(cached[2], queries, k, params, self._out)

    def _search_params(self, key: tuple[Any, ...], sel: Any) -> Any:
        """faiss search parameters for ``key`` and selector ``sel``, built once (the faiss objects cost
        ~20 µs to build, as much as a small exact scan). The cache holds ``sel``, so its id stays unique."""
        full = (*key, id(sel))
        hit = self._param_cache.get(full)
        if hit is not None and hit[0] is sel:
            return hit[1]
        faiss = load_faiss()
        base = None  # kept in the cache entry: the refine params point at it
        if key[0] == "fp16":
            params = faiss.SearchParametersHNSW(efSearch=key[1])
            if sel is not None:
                params.sel = sel
        else:
            _, ef, kc, k = key
            base = faiss.SearchParametersHNSW(efSearch=ef)
            if sel is not None:
                base.sel = sel
            params = faiss.IndexRefineSearchParameters(k_factor=(kc + 0.5) / k, base_index_params=base)
        if len(self._param_cache) >= 256:
            self._param_cache.clear()
        self._param_cache[full] = (sel, params, base)
        return params

    @staticmethod
    def _hits(
        st: State, tenant: str, kind: str | None, scores: np.ndarray, labels: np.ndarray
    ) -> list[list[Hit]]:
        """Hits for faiss's ``(nq, k)`` results (label -1 pads a short result).
        Every row of a search belongs to ``tenant`` (and ``kind``), so only the kind and id are looked up.
        Two ``tolist`` calls for the whole batch (each numpy call costs 10-20 µs once a scan has flushed
        the caches), and the hits built by ``map`` in C (ten after a scan: 4.0 µs p50, 5.0 by a
        comprehension)."""
        ids = st.ids
        if kind is None and len(st.kinds) == 1:
            kind = st.kinds[0]
        out = []
        for rows, vals in zip(labels.tolist(), scores.tolist(), strict=True):
            if rows and rows[-1] < 0:  # a short result: drop the padding
                keep = [i for i, r in enumerate(rows) if r >= 0]
                rows, vals = [rows[i] for i in keep], [vals[i] for i in keep]
            if kind is not None:
                kinds: Iterable[str] = repeat(kind)
            else:
                kinds = map(st.kinds.__getitem__, map(st.kind_no.buf.__getitem__, rows))
            out.append(list(map(Hit, repeat(tenant), kinds, map(ids.__getitem__, rows), vals)))
        return out

    # ------------------------------------------------------------------------------------- maintenance

    def rebuild(self, rows: Iterable[Row]) -> int:
        """Replace the whole content with ``rows`` (a new generation, swapped in at the end); returns the
        number of live rows. Trains on the first ``train_size`` rows; see the package docstring."""
        with self._lock:
            old = self._state
            gen = old.generation + 1
        new = State.create(old.directory, gen, self.params)
        try:
            _fill(new, rows, self.params)
            new.save()
        except BaseException:
            new.remove_files()
            raise
        with self._lock:
            self._state, self._refine, self._param_cache = new, None, {}
            self._time_paths()
        if old.directory == new.directory and old.generation != new.generation:
            old.remove_files()
        return new.live

    def compact(self) -> int:
        """Drop tombstones by rebuilding from the index's own rows; returns the number of live rows."""
        return self.rebuild(self._state.rows())

    def save(self) -> None:
        """Write the current state to the directory (manifest last, atomically)."""
        with self._lock:
            self._state.save()

    def close(self) -> None:
        """Flush the row file and release it; the index is unusable afterwards. Safe to call twice."""
        with self._lock:
            self._refine = None
            self._state.store.close()

    def rows(self) -> Iterator[Row]:
        """Every live (tenant, kind, id, vector) row (float16 precision)."""
        return self._state.rows()

    # ------------------------------------------------------------------------------------ introspection

    def __len__(self) -> int:
        return self._state.live

    def count(self, tenant: str, kind: str | None = None) -> int:
        st = self._state
        t = st.tenant_index.get(tenant)
        kn = -1 if kind is None else st.kind_index.get(kind)
        return 0 if t is None or kn is None else st.counts.get((t, kn), 0)

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 3):
            return False
        st = self._state
        t, k = st.tenant_index.get(key[0]), st.kind_index.get(key[1])
        return t is not None and k is not None and (t, k, key[2]) in st.lookup

    @property
    def directory(self) -> Path:
        return self._state.directory

    @property
    def trained(self) -> bool:
        """True once there is an HNSW stage (at least the HNSW threshold of rows were added)."""
        return self._state.hnsw is not None

    @property
    def graph_codes(self) -> str | None:
        """``"fp16"`` (small graph: float16 codes, no rerank), ``"sq4"`` (4-bit codes + float16 rerank)
        or ``None`` (no HNSW stage yet)."""
        return self._state.graph_codes

    @property
    def device(self) -> str:
        return "gpu" if self._gpu_res is not None else "cpu"

    @property
    def tombstone_fraction(self) -> float:
        st = self._state
        return 0.0 if st.count == 0 else 1.0 - st.live / st.count

    @property
    def needs_compaction(self) -> bool:
        return self.tombstone_fraction > self.params.max_tombstone_fraction

    def memory_bytes(self) -> dict[str, int]:
        """Sizes in bytes, from the structures' own sizes (cheap: no serialisation).

        Resident: ``index`` (HNSW links, offsets and levels + its float16 or 4-bit codes; 0 before the
        HNSW stage, whose exact scan reads the mapped rows) and ``side_table`` (numpy columns, subset
        bitmaps and row lists, an estimate of the id strings and key dict); ``resident`` is their sum
        (nothing else is held: exact scans and reranks read the mapped file). Mapped: ``mapped_file``,
        the float16 row file (header + capacity), paged in on demand and given back under memory
        pressure. ``total`` = ``resident`` + ``mapped_file``."""
        st = self._state
        index = 0 if st.hnsw is None else _hnsw_bytes(st.hnsw)
        side = st.side_table_bytes()
        mapped = st.store.file_bytes
        return {
            "index": index,
            "side_table": side,
            "resident": index + side,
            "mapped_file": mapped,
            "total": index + side + mapped,
        }


def _outputs(
    n: int, k: int, reuse: dict[int, tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Result arrays for ``n`` queries of ``k``: the ones ``reuse`` keeps for single-query searches (one
    dict per HybridIndex: callers hold its lock and turn the results into hits before releasing it)."""
    out = reuse.get(k) if n == 1 else None
    if out is None:
        out = (np.empty((n, k), dtype=np.float32), np.empty((n, k), dtype=np.int64))
        if n == 1 and len(reuse) < 64:
            reuse[k] = out
    return out


def _search(
    index: Any, queries: np.ndarray, k: int, params: Any, reuse: dict[int, tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` through faiss's own C++ entry point, into :func:`_outputs`. Skips the Python
    wrapper's checks and two allocations per call."""
    faiss = load_faiss()
    n = len(queries)
    dist, labels = _outputs(n, k, reuse)
    index.search_c(n, faiss.swig_ptr(queries), k, faiss.swig_ptr(dist), faiss.swig_ptr(labels), params)
    return dist, labels


def _hnsw_bytes(index: Any) -> int:
    """Resident bytes of an ``IndexHNSWSQ``: codes + neighbour links + offsets + levels."""
    faiss = load_faiss()
    storage = faiss.downcast_index(index.storage)
    hnsw = index.hnsw
    return int(
        storage.codes.size()
        + 4 * hnsw.neighbors.size()
        + 8 * hnsw.offsets.size()
        + 4 * hnsw.levels.size()
        + 4 * storage.sq.trained.size()
    )


def _fill(state: State, rows: Iterable[Row], params: HybridParams) -> None:
    """Stream ``rows`` into an empty ``state``: buffer ``train_size`` rows, train, then add in chunks."""
    it = iter(rows)
    buffered: list[Row] = []
    for row in it:
        buffered.append(row)
        if len(buffered) >= params.train_size:
            break
    _append_rows(state, buffered, train=False)  # then train once, on all of them
    if state.count >= params.hnsw_threshold:
        state.train_hnsw()
    batch: list[Row] = []
    for row in it:
        batch.append(row)
        if len(batch) >= CHUNK:
            _append_rows(state, batch)
            batch = []
    _append_rows(state, batch)


def _append_rows(state: State, rows: list[Row], *, train: bool = True) -> None:
    groups: dict[tuple[str, str], tuple[list[str], list[Any]]] = {}
    for tenant, kind, key, vector in rows:
        check_name(tenant, "tenant")
        check_name(kind, "kind")
        keys, vecs = groups.setdefault((tenant, kind), ([], []))
        keys.append(str(key))
        vecs.append(vector)
    for (tenant, kind), (keys, vecs) in groups.items():
        state.append(tenant, kind, keys, as_unit_matrix(vecs, state.params.dim, "rebuild"), train=train)
