"""The FAISS hybrid index: HNSW over 4-bit codes for k′ candidates, exact rerank from a memory-mapped store.

Composition (chosen by measurement, see below)::

    query ──► IndexHNSWSQ(QT_4bit, M=20, efConstruction=160) ── k′ = max(k_prime, 2k) candidates,
              tenant/kind bitmap filter
          ──► exact cosine over the candidates' float16 rows, read from a memory-mapped file ──► top k

Memory per vector at 384-d (flat float32 = 1,536 B; the target is <= 1/4 = 384 B): HNSW graph ~177 B
(M=20: 40 level-0 links + upper levels + offsets) + SQ4 codes 192 B = **368 B in RAM (0.24 of flat)**,
measured at 1 M; the float16 rows (768 B) stay in a file that the OS pages in on demand (k′ random rows
per query). The side table (ids, key map) is Python objects, ~200 B per row, reported separately.

Why this one. First, 100,000 MiniLM embeddings of WordNet glosses, 300 held-out queries, exact ground
truth, M=16, efConstruction 80, ef = k′ = 64 unless noted, 2 shared cores:

=========================================  ======  =========  ==========  ===========================
composition                                 RAM/v   recall@10  recall@100  note
=========================================  ======  =========  ==========  ===========================
HNSW16-SQ4 + exact f16 rerank (mmap)         336 B    0.988     0.975*      p50 0.23 ms; build 13 s
HNSW32-PQ48 + exact f16 rerank (mmap)        324 B    0.947     0.745       PQ48 candidates too coarse
HNSW16-PQ48 + IndexRefine(PQ192), ef 256     392 B    0.937     0.931       over budget, under 0.95
IVF1264(HNSW)-PQ48 + Refine(PQ192), np 64    279 B    0.914     0.897       p95 4.5 ms
=========================================  ======  =========  ==========  ===========================

(* with k′ = 128.) The ceiling of any in-RAM rerank is the recall of an *exhaustive* search over its codes:
SQ4 (192 B) 0.937, PQ192 (192 B) 0.952, SQ6 (288 B) 0.981, SQ8 (384 B) 0.994. SQ8 alone is the whole
budget and SQ6 leaves 96 B, less than an HNSW graph of useful degree; PQ192 tops out at 0.952 before the
HNSW stage loses anything and takes ~3 minutes to train. So the rerank reads exact (float16; relative error
5e-4, no measurable recall loss) rows kept out of RAM, and the 4-bit codes only have to put the true top 10
among k′ candidates. ``memory_bytes()`` reports the resident index and the file separately; a hot page
cache holds at most 1/2 of flat float32 and gives those pages back under memory pressure.

Then 1,000,000 synthetic vectors (``wavegraph.bench.ann.synthetic_clustered``, 1,000 queries): with M=16 /
efConstruction 80 the graph, not the codes, limited recall: recall@10 0.772 / 0.886 / 0.937 at ef 64 /
128 / 256 for the hybrid and 0.784 / 0.869 / 0.929 for HNSW16-flat. M=20 / efConstruction 160 (still
0.24 of flat) gives 0.968 / 0.993 / 0.999 at ef 64 / 128 / 256 with p95 0.9 / 1.3 / 2.0 ms (one thread);
build 670 s on 2 shared cores. Hence the defaults.

Ids and filters: faiss sees row numbers 0..n-1 (one per added vector, never reused); a side table maps them
to (tenant, kind, id) strings and back. Every search is limited to one tenant (and optionally one kind):
a per-filter bitmap (``faiss.IDSelectorBitmap``, kept up to date incrementally, dead rows cleared) goes to
HNSW through ``SearchParametersHNSW(sel=...)``, with efSearch raised as ``ef / sqrt(fraction selected)``
(measured: recall@10 >= 0.97 down to 10 % selectivity) up to ``max_ef``. A filter that selects at most
``exact_below`` rows is searched exactly over the float16 rows instead (graph search degrades when only a
few percent of the nodes qualify: 0.46 recall at 1 % with ef 64).

Adds and deletes: ``add`` appends (an existing (tenant, kind, id) is replaced: the old row becomes a
tombstone); ``delete`` tombstones (HNSW cannot remove nodes). Tombstones never surface (they are cleared
from every bitmap) and are dropped by ``compact()``, which rebuilds from the index's own float16 rows
(no source needed); ``needs_compaction`` turns true above ``max_tombstone_fraction``. ``rebuild(rows)``
replaces everything from an iterable of (tenant, kind, id, vector) rows: the pgvector store (the source of
truth) feeds it on start. It trains the 4-bit quantizer on the first ``train_size`` rows, so feed rows in
an order that does not group one tenant or kind first. Below ``min_train`` rows there is no HNSW yet and
searches are exact.

Persistence (``save()``/``load()``): ``<dir>/manifest.json`` names the current generation ``g`` and
snapshot ``s``: ``g<g>.f16`` (the rows, append-only, so rows past the snapshot's count are ignored),
``g<g>-s<s>.hnsw`` (``faiss.write_index``) and ``g<g>-s<s>.rows.npz`` (side table, no pickle). A save
writes new snapshot files, replaces the manifest atomically, then deletes the older snapshot, so a crash
at any point leaves the previous snapshot loadable.

GPU: faiss has no GPU HNSW, so the candidate stage stays on CPU. When faiss reports a GPU
(``faiss.get_num_gpus() > 0``, device "auto" or "gpu") the rerank and the exact small-filter path score on
the GPU with faiss's brute-force kernel (``faiss.knn_gpu``) through the same ``_rerank`` code; otherwise
numpy on CPU.

Thread safety: one lock serialises searches and writes. ``rebuild``/``compact`` build the new generation
outside the lock and swap it in; writes made meanwhile are not carried over (pause writers, or replay
them from PostgreSQL).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from wavegraph.errors import MissingPrerequisite, WavegraphError

if TYPE_CHECKING:
    from wavegraph.settings import VectorSettings

__all__ = [
    "FORMAT_VERSION",
    "Hit",
    "HybridIndex",
    "HybridParams",
    "IndexCorrupt",
    "InvalidVector",
    "Row",
]

FORMAT_VERSION = 1
Row = tuple[str, str, str, np.ndarray]
_CHUNK = 8192


class InvalidVector(WavegraphError, ValueError):
    """A vector has the wrong shape or dimension, holds NaN or infinity, or is all zeros."""


class IndexCorrupt(WavegraphError):
    """The files in an index directory are missing, inconsistent or from another format version."""


@dataclass(frozen=True)
class HybridParams:
    """Parameters of the hybrid index (``from_settings`` fills them from ``VectorSettings``)."""

    dim: int = 384
    k_prime: int = 64  # candidates from HNSW (at least 2k)
    ef_search: int = 64  # HNSW efSearch (at least k′)
    hnsw_m: int = 20  # 1 M x 384: graph ~177 B + SQ4 192 B = 0.24 of flat float32
    ef_construction: int = 160
    min_train: int = 10_000  # fewer rows: no HNSW, exact search
    train_size: int = 100_000  # rows used to train the 4-bit quantizer
    exact_below: int = 10_000  # a filter selecting at most this many rows is searched exactly
    max_ef: int = 1024
    max_tombstone_fraction: float = 0.2
    device: Literal["auto", "cpu", "gpu"] = "auto"

    def __post_init__(self) -> None:
        if self.dim < 2 or self.k_prime < 1 or self.ef_search < 1 or self.hnsw_m < 2:
            raise ValueError(f"invalid HybridParams: {self}")
        if self.min_train < 256 or self.train_size < self.min_train:
            raise ValueError("HybridParams needs 256 <= min_train <= train_size")
        if not 0 < self.max_tombstone_fraction <= 1:
            raise ValueError("max_tombstone_fraction must be in (0, 1]")

    @classmethod
    def from_settings(cls, vector: VectorSettings, **overrides: Any) -> HybridParams:
        """Build from ``settings.vector``; fields the settings do not (yet) carry keep their defaults."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if hasattr(vector, name):
                values[name] = getattr(vector, name)
        values.update(overrides)
        return cls(**values)

    def candidates(self, k: int) -> int:
        return max(self.k_prime, 2 * k)


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the stored key and its cosine similarity to the query."""

    tenant: str
    kind: str
    id: str
    score: float


# ---------------------------------------------------------------------------------------------- helpers


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingPrerequisite("the FAISS index needs faiss: pip install 'wavegraph[graph]'") from None
    return faiss


def _as_matrix(vectors: Any, dim: int, what: str) -> np.ndarray:
    """Validate and L2-normalise ``vectors`` -> contiguous float32 ``(n, dim)``."""
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidVector(f"{what}: not a numeric vector ({exc})") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        got = arr.shape[-1] if arr.ndim >= 1 else "a scalar"
        raise InvalidVector(f"{what}: expected dimension {dim}, got {got} (shape {arr.shape})")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InvalidVector(f"{what}: row {bad} holds NaN or infinity")
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if not np.isfinite(norms).all():
        bad = int(np.flatnonzero(~np.isfinite(norms[:, 0]))[0])
        raise InvalidVector(f"{what}: row {bad} is too large to normalise in float32")
    if (norms == 0).any():
        raise InvalidVector(f"{what}: row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros")
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


class _Grow:
    """A growable 1-D numpy array."""

    def __init__(self, dtype: Any, data: np.ndarray | None = None) -> None:
        self.buf = np.zeros(max(1024, 0 if data is None else len(data)), dtype=dtype)
        self.n = 0
        if data is not None:
            self.extend(data)

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.buf):
            new = np.zeros(max(need, 2 * len(self.buf)), dtype=self.buf.dtype)
            new[: self.n] = self.buf[: self.n]
            self.buf = new
        self.buf[self.n : need] = values
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]


class _RowStore:
    """Float16 rows in a file, memory-mapped; row i belongs to faiss id i. Appends grow the file."""

    def __init__(self, path: Path, dim: int, count: int = 0) -> None:
        self.path, self.dim, self.count = path, dim, count
        row_bytes = dim * 2
        if not path.exists():
            path.write_bytes(b"")
        size = path.stat().st_size
        if size < count * row_bytes:
            raise IndexCorrupt(f"{path}: holds {size // row_bytes} rows, the manifest says {count}")
        self._map: np.memmap[Any, np.dtype[np.float16]] | None = None
        self._capacity = size // row_bytes
        if self._capacity == 0:
            self._resize(1024)
        else:
            self._open()

    def _open(self) -> None:
        self._map = np.memmap(self.path, dtype=np.float16, mode="r+", shape=(self._capacity, self.dim))

    def _resize(self, capacity: int) -> None:
        if self._map is not None:
            self._map.flush()
            self._map = None
        with self.path.open("r+b") as fh:
            fh.truncate(capacity * self.dim * 2)
        self._capacity = capacity
        self._open()

    @property
    def rows(self) -> np.ndarray:
        if self._map is None:
            raise RuntimeError(f"{self.path}: the index was closed")
        return self._map[: self.count]

    def append(self, vectors: np.ndarray) -> None:
        need = self.count + len(vectors)
        if need > self._capacity:
            self._resize(max(need, self._capacity + self._capacity // 2))
        assert self._map is not None
        self._map[self.count : need] = vectors.astype(np.float16)
        self.count = need

    def gather(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.rows[ids], dtype=np.float32)

    def flush(self) -> None:
        if self._map is not None:
            self._map.flush()

    def close(self) -> None:
        self.flush()
        self._map = None

    @property
    def file_bytes(self) -> int:
        return self._capacity * self.dim * 2


class _Subset:
    """The live rows of one (tenant[, kind]) filter, as a bitmap for faiss and a list of row numbers."""

    def __init__(self) -> None:
        self.covered = 0
        self.bitmap = np.zeros(128, dtype=np.uint8)
        self.ids = _Grow(np.int64)

    def update(self, match: np.ndarray, alive: np.ndarray, upto: int) -> None:
        """Take in rows ``covered..upto`` (``match``/``alive`` are full column views)."""
        if upto <= self.covered:
            return
        start = (self.covered // 8) * 8
        nbytes = (upto + 7) // 8
        if nbytes > len(self.bitmap):
            grown = np.zeros(max(nbytes, 2 * len(self.bitmap)), dtype=np.uint8)
            grown[: len(self.bitmap)] = self.bitmap
            self.bitmap = grown
        sel = match[start:upto] & alive[start:upto]
        self.bitmap[start // 8 : nbytes] = np.packbits(sel, bitorder="little")
        fresh = np.flatnonzero(match[self.covered : upto]) + self.covered
        self.ids.extend(fresh)
        self.covered = upto

    def clear(self, row: int) -> None:
        if row < self.covered:
            self.bitmap[row >> 3] &= np.uint8(0xFF ^ (1 << (row & 7)))


@dataclass
class _State:
    """Everything one generation of the index holds."""

    directory: Path
    generation: int
    params: HybridParams
    store: _RowStore
    hnsw: Any = None
    tenants: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    tenant_no: _Grow = field(default_factory=lambda: _Grow(np.int32))
    kind_no: _Grow = field(default_factory=lambda: _Grow(np.int32))
    alive: _Grow = field(default_factory=lambda: _Grow(np.bool_))
    ids: list[str] = field(default_factory=list)
    lookup: dict[tuple[int, int, str], int] = field(default_factory=dict)
    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    subsets: dict[tuple[int, int], _Subset] = field(default_factory=dict)
    tenant_index: dict[str, int] = field(default_factory=dict)
    kind_index: dict[str, int] = field(default_factory=dict)
    saves: int = 0  # sequence number of the last save() of this generation

    def path(self, suffix: str, save: int | None = None) -> Path:
        """``g<generation>.f16`` (the rows), or ``g<generation>-s<save>.<suffix>`` (one snapshot)."""
        if save is None:
            return self.directory / f"g{self.generation}.{suffix}"
        return self.directory / f"g{self.generation}-s{save}.{suffix}"

    @property
    def count(self) -> int:
        return self.store.count

    @property
    def live(self) -> int:
        return len(self.lookup)

    def _no(self, names: list[str], index: dict[str, int], name: str) -> int:
        no = index.get(name)
        if no is None:
            no = index[name] = len(names)
            names.append(name)
        return no

    def append(
        self, tenant: str, kind: str, keys: Sequence[str], vectors: np.ndarray, *, train: bool = True
    ) -> None:
        """Append normalised ``vectors`` under (tenant, kind, keys[i]); replaced keys become tombstones.
        Reaching ``min_train`` rows trains the HNSW stage unless ``train`` is false."""
        t = self._no(self.tenants, self.tenant_index, tenant)
        k = self._no(self.kinds, self.kind_index, kind)
        first = self.count
        stale = [self.lookup[(t, k, key)] for key in keys if (t, k, key) in self.lookup]
        if len(set(keys)) != len(keys):  # the last occurrence of a repeated id wins
            last = {key: i for i, key in enumerate(keys)}
            keep = sorted(last.values())
            keys = [keys[i] for i in keep]
            vectors = vectors[keep]
        for row in stale:
            self.kill(row)
        self.store.append(vectors)
        n = len(keys)
        self.tenant_no.extend(np.full(n, t, dtype=np.int32))
        self.kind_no.extend(np.full(n, k, dtype=np.int32))
        self.alive.extend(np.ones(n, dtype=np.bool_))
        self.ids.extend(keys)
        for i, key in enumerate(keys):
            self.lookup[(t, k, key)] = first + i
        for key2 in ((t, -1), (t, k)):
            self.counts[key2] = self.counts.get(key2, 0) + n
        if self.hnsw is not None:
            self.hnsw.add(vectors)
        elif train and self.count >= self.params.min_train:
            self.train_hnsw()

    def kill(self, row: int) -> None:
        if not self.alive.buf[row]:
            return
        self.alive.buf[row] = False
        t, k = int(self.tenant_no.buf[row]), int(self.kind_no.buf[row])
        del self.lookup[(t, k, self.ids[row])]
        for key in ((t, -1), (t, k)):
            self.counts[key] -= 1
            sub = self.subsets.get(key)
            if sub is not None:
                sub.clear(row)

    def train_hnsw(self) -> None:
        """Train the 4-bit quantizer on up to ``train_size`` live rows and index every row."""
        faiss = _faiss()
        p = self.params
        live = np.flatnonzero(self.alive.view)
        if len(live) > p.train_size:
            live = np.sort(np.random.default_rng(0).choice(live, p.train_size, replace=False))
        index = faiss.IndexHNSWSQ(p.dim, faiss.ScalarQuantizer.QT_4bit, p.hnsw_m)
        index.hnsw.efConstruction = p.ef_construction
        index.train(self.store.gather(live))
        for start in range(0, self.count, 65536):
            stop = min(self.count, start + 65536)
            index.add(np.asarray(self.store.rows[start:stop], dtype=np.float32))
        self.hnsw = index

    def subset(self, t: int, k: int) -> _Subset:
        key = (t, k)
        sub = self.subsets.get(key)
        if sub is None:
            sub = self.subsets[key] = _Subset()
        if sub.covered < self.count:
            match = self.tenant_no.view == t
            if k >= 0:
                match &= self.kind_no.view == k
            sub.update(match, self.alive.view, self.count)
        return sub

    def rows(self) -> Iterator[Row]:
        """Every live row as (tenant, kind, id, float32 vector), in row order."""
        alive = self.alive.view
        for start in range(0, self.count, _CHUNK):
            stop = min(self.count, start + _CHUNK)
            block = np.asarray(self.store.rows[start:stop], dtype=np.float32)
            for i in np.flatnonzero(alive[start:stop]):
                row = start + int(i)
                yield (
                    self.tenants[self.tenant_no.buf[row]],
                    self.kinds[self.kind_no.buf[row]],
                    self.ids[row],
                    block[i],
                )

    # --------------------------------------------------------------------------------------- persistence

    def save(self) -> None:
        """Write a new snapshot's files, then point the manifest at them, then drop the older ones."""
        faiss = _faiss()
        self.store.flush()
        seq = self.saves + 1
        if self.hnsw is not None:
            faiss.write_index(self.hnsw, str(self.path("hnsw", seq)))
        encoded = [s.encode("utf-8") for s in self.ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        with self.path("rows.npz", seq).open("wb") as fh:
            np.savez(
                fh,
                tenant_no=self.tenant_no.view,
                kind_no=self.kind_no.view,
                alive=self.alive.view,
                id_offsets=offsets,
                id_blob=np.frombuffer(b"".join(encoded), dtype=np.uint8),
            )
        manifest = {
            "format": FORMAT_VERSION,
            "generation": self.generation,
            "save": seq,
            "count": self.count,
            "trained": self.hnsw is not None,
            "tenants": self.tenants,
            "kinds": self.kinds,
            "params": asdict(self.params),
        }
        tmp = self.directory / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.directory / "manifest.json")
        self.saves = seq
        for old in self.directory.glob(f"g{self.generation}-s*"):
            if not old.name.startswith(f"g{self.generation}-s{seq}."):
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path, params: HybridParams | None) -> _State:
        faiss = _faiss()
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"{directory}: no readable manifest.json ({exc})") from None
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexCorrupt(f"{directory}: format {manifest.get('format')}, expected {FORMAT_VERSION}")
        try:
            saved = HybridParams(**manifest["params"])
            gen, seq, count = int(manifest["generation"]), int(manifest["save"]), int(manifest["count"])
            tenants, kinds, trained = list(manifest["tenants"]), list(manifest["kinds"]), manifest["trained"]
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorrupt(f"{directory}/manifest.json: bad or missing field ({exc})") from None
        if params is not None and params.dim != saved.dim:
            raise IndexCorrupt(f"{directory}: holds {saved.dim}-d vectors, settings ask for {params.dim}")
        params = params or replace(saved, device="auto")
        state = cls(directory, gen, params, _RowStore(directory / f"g{gen}.f16", saved.dim, count), saves=seq)
        rows_path = state.path("rows.npz", seq)
        try:
            with np.load(rows_path, allow_pickle=False) as z:
                cols = {name: z[name] for name in z.files}
            blob, offsets = cols["id_blob"].tobytes(), cols["id_offsets"]
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"{rows_path}: unreadable ({exc})") from None
        if any(len(cols[c]) != count for c in ("tenant_no", "kind_no", "alive")) or len(offsets) != count + 1:
            raise IndexCorrupt(f"{rows_path}: side table does not hold {count} rows")
        state.tenants, state.kinds = tenants, kinds
        state.tenant_index = {n: i for i, n in enumerate(state.tenants)}
        state.kind_index = {n: i for i, n in enumerate(state.kinds)}
        state.tenant_no = _Grow(np.int32, cols["tenant_no"])
        state.kind_no = _Grow(np.int32, cols["kind_no"])
        state.alive = _Grow(np.bool_, cols["alive"])
        state.ids = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
        alive = state.alive.view
        for row in np.flatnonzero(alive):
            t, k = int(state.tenant_no.buf[row]), int(state.kind_no.buf[row])
            state.lookup[(t, k, state.ids[row])] = int(row)
        state.counts = _count_keys(state.lookup)
        if trained:
            hnsw_path = state.path("hnsw", seq)
            try:
                state.hnsw = faiss.read_index(str(hnsw_path))
            except RuntimeError as exc:
                raise IndexCorrupt(f"{hnsw_path}: unreadable ({exc})") from None
            if state.hnsw.ntotal != count:
                raise IndexCorrupt(f"{hnsw_path}: {state.hnsw.ntotal} vectors, expected {count}")
        return state

    def remove_files(self) -> None:
        self.store.close()
        self.path("f16").unlink(missing_ok=True)
        for old in self.directory.glob(f"g{self.generation}-s*"):
            old.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ index


class HybridIndex:
    """Multi-tenant cosine-similarity index over (tenant, kind, id) keys; see the module docstring.

    Open one with ``HybridIndex.open(directory, params)`` (loads a saved index or starts an empty one).
    ``index.params`` may be replaced between calls to change the search-time fields (``k_prime``,
    ``ef_search``, ``max_ef``, ``exact_below``); the others take effect at the next ``rebuild``.
    """

    def __init__(self, directory: Path, params: HybridParams | None = None) -> None:
        """Start an empty index in ``directory`` (created if needed; an existing manifest is an error)."""
        self.params = params or HybridParams()
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "manifest.json").exists():
            raise FileExistsError(f"{directory} already holds an index: use HybridIndex.open() or load()")
        self._lock = threading.RLock()
        self._state = _State(directory, 0, self.params, _RowStore(directory / "g0.f16", self.params.dim))
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
        self._state = _State.load(directory, params)
        self.params = self._state.params
        self._init_device()
        return self

    def _init_device(self) -> None:
        faiss = _faiss()
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
            if pending >= _CHUNK:
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
        _check_name(tenant, "tenant")
        _check_name(kind, "kind")
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of strings, not one string")
        keys = [str(i) for i in ids]
        if not keys:
            return
        mat = _as_matrix(vectors, self.params.dim, f"add({tenant!r}, {kind!r})")
        if len(mat) != len(keys):
            raise InvalidVector(f"add: {len(keys)} ids but {len(mat)} vectors")
        with self._lock:
            self._state.append(tenant, kind, keys, mat)

    def delete(self, tenant: str, kind: str, ids: Iterable[str]) -> int:
        """Remove the given keys (tombstones, see the module docstring); returns how many existed."""
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
        queries = _as_matrix(vectors, self.params.dim, "query")
        with self._lock:
            st = self._state
            t = st.tenant_index.get(tenant)
            kn = -1 if kind is None else st.kind_index.get(kind)
            if t is None or kn is None:
                return [[] for _ in range(len(queries))]
            selected = st.counts.get((t, kn), 0)
            if selected == 0:
                return [[] for _ in range(len(queries))]
            sub = st.subset(t, kn)
            if st.hnsw is None or selected <= self.params.exact_below:
                ids = sub.ids.view
                ids = ids[st.alive.view[ids]]
                rows = st.store.gather(ids)  # once for the whole batch
                return [self._rerank(st, q, ids, k, rows) for q in queries]
            cands = self._candidates(st, sub, queries, k, selected)
            return [self._rerank(st, q, c, k) for q, c in zip(queries, cands, strict=True)]

    def _candidates(
        self, st: _State, sub: _Subset, queries: np.ndarray, k: int, selected: int
    ) -> list[np.ndarray]:
        faiss = _faiss()
        p = self.params
        kc = p.candidates(k)
        fraction = selected / max(1, st.count)
        ef = min(max(p.max_ef, kc), max(p.ef_search, kc, math.ceil(p.ef_search / math.sqrt(fraction))))
        nbytes = (st.count + 7) // 8
        sel = faiss.IDSelectorBitmap(nbytes, faiss.swig_ptr(sub.bitmap))
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
        _, labels = st.hnsw.search(queries, kc, params=params)
        return [row[row >= 0] for row in labels]

    def _rerank(
        self, st: _State, query: np.ndarray, cand: np.ndarray, k: int, vecs: np.ndarray | None = None
    ) -> list[Hit]:
        """Exact cosine of ``query`` against the candidate rows; the top ``k`` as hits (GPU or CPU)."""
        if len(cand) == 0:
            return []
        if vecs is None:
            vecs = st.store.gather(cand)
        kk = min(k, len(cand))
        if self._gpu_res is not None:
            faiss = _faiss()
            dist, idx = faiss.knn_gpu(self._gpu_res, query[None], vecs, kk, metric=faiss.METRIC_INNER_PRODUCT)
            order, scores = idx[0], dist[0]
        else:
            sims = vecs @ query
            top = np.argpartition(-sims, kk - 1)[:kk] if len(sims) > kk else np.arange(len(sims))
            order = top[np.argsort(-sims[top], kind="stable")]
            scores = sims[order]
        return [
            Hit(
                st.tenants[st.tenant_no.buf[row]],
                st.kinds[st.kind_no.buf[row]],
                st.ids[row],
                float(s),
            )
            for row, s in zip(cand[order].tolist(), scores.tolist(), strict=True)
        ]

    # ------------------------------------------------------------------------------------- maintenance

    def rebuild(self, rows: Iterable[Row]) -> int:
        """Replace the whole content with ``rows`` (a new generation, swapped in at the end); returns the
        number of live rows. Trains on the first ``train_size`` rows; see the module docstring."""
        with self._lock:
            old = self._state
            gen = old.generation + 1
        new = _State(
            old.directory, gen, self.params, _RowStore(old.directory / f"g{gen}.f16", self.params.dim)
        )
        try:
            _fill(new, rows, self.params)
            new.save()
        except BaseException:
            new.remove_files()
            raise
        with self._lock:
            self._state = new
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
        """True once there is an HNSW stage (at least ``min_train`` rows were added)."""
        return self._state.hnsw is not None

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
        """Sizes in bytes (serialises the index: not for hot paths).

        ``index``: the faiss HNSW + codes (serialized size); ``side_table``: the numpy columns and an
        estimate of the Python id strings and key dict; ``mapped_file``: the float16 rows on disk (paged
        in on demand, not resident)."""
        st = self._state
        index = 0
        if st.hnsw is not None:
            index = int(_faiss().serialize_index(st.hnsw).nbytes)
        columns = st.tenant_no.buf.nbytes + st.kind_no.buf.nbytes + st.alive.buf.nbytes
        sample = st.ids[:1000]
        per_id = sum(sys.getsizeof(s) for s in sample) / max(1, len(sample)) + 8  # + the list slot
        # key dict: ~100 B per entry (slot + hash + 3-tuple) plus the int it maps to
        return {
            "index": index,
            "side_table": int(columns + per_id * st.count + 130 * st.live),
            "mapped_file": st.store.file_bytes,
        }


def _count_keys(lookup: dict[tuple[int, int, str], int]) -> dict[tuple[int, int], int]:
    """Live rows per (tenant, kind) and per (tenant, -1)."""
    counts: dict[tuple[int, int], int] = {}
    for t, k, _ in lookup:
        counts[(t, k)] = counts.get((t, k), 0) + 1
        counts[(t, -1)] = counts.get((t, -1), 0) + 1
    return counts


def _check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")


def _fill(state: _State, rows: Iterable[Row], params: HybridParams) -> None:
    """Stream ``rows`` into an empty ``state``: buffer ``train_size`` rows, train, then add in chunks."""
    it = iter(rows)
    buffered: list[Row] = []
    for row in it:
        buffered.append(row)
        if len(buffered) >= params.train_size:
            break
    _append_rows(state, buffered, train=False)  # then train once, on all of them
    if state.count >= params.min_train:
        state.train_hnsw()
    batch: list[Row] = []
    for row in it:
        batch.append(row)
        if len(batch) >= _CHUNK:
            _append_rows(state, batch)
            batch = []
    _append_rows(state, batch)


def _append_rows(state: _State, rows: list[Row], *, train: bool = True) -> None:
    groups: dict[tuple[str, str], tuple[list[str], list[Any]]] = {}
    for tenant, kind, key, vector in rows:
        _check_name(tenant, "tenant")
        _check_name(kind, "kind")
        keys, vecs = groups.setdefault((tenant, kind), ([], []))
        keys.append(str(key))
        vecs.append(vector)
    for (tenant, kind), (keys, vecs) in groups.items():
        state.append(tenant, kind, keys, _as_matrix(vecs, state.params.dim, "rebuild"), train=train)
