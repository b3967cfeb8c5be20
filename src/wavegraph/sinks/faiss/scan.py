"""The exact scan of a collection below the HNSW threshold: a float32 copy of its rows and one compiled
kernel that keeps the ``k`` best inner products of each query.

Why not ``faiss.IndexFlatIP``: for one query faiss takes one row at a time, each dot product a single
chain of dependent fused multiply-adds, so the scan waits on the adder's latency, not on memory. The
kernel here computes four rows at once (four independent chains, vectorised by LLVM), streams the rows
once and keeps the best ``k`` in a sorted array (a row that does not beat the k-th costs one compare).
Measured on this machine, one thread, rows in cache: 637 x 784 0.072 -> 0.044 ms p50, 1,302 x 384
0.080 -> 0.045, 5,207 x 384 0.266 -> 0.177 (faiss's Python call included in its figure). Batches of
``BLAS_BATCH`` queries or more over every row go to faiss's BLAS product (a matrix product beats any
number of scans).

numba comes with faiss in the ``graph`` extra; the kernels are compiled on first use and cached on disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wavegraph.errors import MissingPrerequisite
from wavegraph.sinks.faiss.errors import load_faiss

__all__ = ["BLAS_BATCH", "FloatRows", "top_k"]

BLAS_BATCH = 32  # queries from which a batch over every row is one BLAS product instead of scans
# Reassociation (what vectorises a dot product) and fused multiply-adds, nothing else: the k best start
# at -inf, which "no infinities" (in fastmath=True) would let LLVM assume away.
_FLAGS = {"reassoc", "contract"}

numba: Any
try:
    import numba
except ImportError:  # the index raises MissingPrerequisite at its first exact scan
    numba = None

    def _jit(fn: Any) -> Any:
        return fn

    _inline = _jit
else:
    _jit = numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_FLAGS)
    _inline = numba.njit(inline="always", fastmath=_FLAGS)


class FloatRows:
    """A growable ``(n, dim)`` float32 array: the copy of the float16 rows that the scan reads."""

    def __init__(self, dim: int, capacity: int, limit: int) -> None:
        """Room for ``capacity`` rows; growing doubles it, but not past ``limit`` rows (the HNSW threshold,
        where the copy is dropped) unless more are needed."""
        self.buf = np.zeros((max(1, capacity), dim), dtype=np.float32)
        self.n, self.limit = 0, limit

    def extend(self, rows: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self.buf):
            size = max(need, min(2 * len(self.buf), self.limit))
            grown = np.zeros((size, self.buf.shape[1]), dtype=np.float32)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : need] = rows
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]

    @property
    def nbytes(self) -> int:
        """Bytes held (capacity, not only the rows in use)."""
        return int(self.buf.nbytes)


def top_k(
    rows: np.ndarray,
    queries: np.ndarray,
    k: int,
    ids: np.ndarray | None = None,
    alive: np.ndarray | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest inner products of each query with ``rows`` -> ``(scores, labels)``, both
    ``(len(queries), k)``, best first, equal scores by row number; a short result is padded with label
    -1 (score -inf). With ``ids``, only those rows are scanned, and of them only the ones ``alive``
    marks. ``queries`` and ``rows`` are C-contiguous float32; ``out`` may supply the result arrays."""
    nq = len(queries)
    if out is None:
        out = (np.empty((nq, k), dtype=np.float32), np.empty((nq, k), dtype=np.int64))
    scores, labels = out
    if ids is None:
        if nq >= BLAS_BATCH and len(rows) > 0:
            return _blas(rows, queries, k)
        _require_numba()
        _scan_all(rows, queries, scores, labels)
    else:
        if alive is None:
            alive = np.ones(len(rows), dtype=np.bool_)
        _require_numba()
        _scan_ids(rows, ids, alive, queries, scores, labels)
    return scores, labels


def _blas(rows: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    faiss = load_faiss()
    kk = min(k, len(rows))
    dist, idx = faiss.knn(queries, rows, kk, metric=faiss.METRIC_INNER_PRODUCT)
    if kk == k:
        return dist, idx
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    labels = np.full((len(queries), k), -1, dtype=np.int64)
    scores[:, :kk], labels[:, :kk] = dist, idx
    return scores, labels


# ------------------------------------------------------------------------------------------- kernels


@_inline
def _insert(score: Any, row: Any, best: Any, labels: Any, k: int) -> Any:
    """Put ``score`` (known to beat ``best[k-1]``) into the descending ``best``; returns the new k-th.
    An equal score stays behind the earlier row."""
    p = k - 1
    while p > 0 and best[p - 1] < score:
        best[p] = best[p - 1]
        labels[p] = labels[p - 1]
        p -= 1
    best[p] = score
    labels[p] = row
    return best[k - 1]


@_jit
def _scan_all(rows: Any, queries: Any, scores: Any, labels: Any) -> None:
    n, d = rows.shape
    k = scores.shape[1]
    for qi in range(queries.shape[0]):
        q, best, lab = queries[qi], scores[qi], labels[qi]
        best[:] = -np.inf
        lab[:] = -1
        kth = best[k - 1]
        i = 0
        while i + 4 <= n:
            a0 = a1 = a2 = a3 = np.float32(0.0)
            for j in range(d):
                qj = q[j]
                a0 += rows[i, j] * qj
                a1 += rows[i + 1, j] * qj
                a2 += rows[i + 2, j] * qj
                a3 += rows[i + 3, j] * qj
            if a0 > kth:
                kth = _insert(a0, i, best, lab, k)
            if a1 > kth:
                kth = _insert(a1, i + 1, best, lab, k)
            if a2 > kth:
                kth = _insert(a2, i + 2, best, lab, k)
            if a3 > kth:
                kth = _insert(a3, i + 3, best, lab, k)
            i += 4
        while i < n:
            a = np.float32(0.0)
            for j in range(d):
                a += rows[i, j] * q[j]
            if a > kth:
                kth = _insert(a, i, best, lab, k)
            i += 1


@_jit
def _scan_ids(rows: Any, ids: Any, alive: Any, queries: Any, scores: Any, labels: Any) -> None:
    d = rows.shape[1]
    k = scores.shape[1]
    live = np.empty(len(ids), dtype=np.int64)
    n = 0
    for r in ids:
        if alive[r]:
            live[n] = r
            n += 1
    for qi in range(queries.shape[0]):
        q, best, lab = queries[qi], scores[qi], labels[qi]
        best[:] = -np.inf
        lab[:] = -1
        kth = best[k - 1]
        i = 0
        while i + 4 <= n:
            r0, r1, r2, r3 = live[i], live[i + 1], live[i + 2], live[i + 3]
            a0 = a1 = a2 = a3 = np.float32(0.0)
            for j in range(d):
                qj = q[j]
                a0 += rows[r0, j] * qj
                a1 += rows[r1, j] * qj
                a2 += rows[r2, j] * qj
                a3 += rows[r3, j] * qj
            if a0 > kth:
                kth = _insert(a0, r0, best, lab, k)
            if a1 > kth:
                kth = _insert(a1, r1, best, lab, k)
            if a2 > kth:
                kth = _insert(a2, r2, best, lab, k)
            if a3 > kth:
                kth = _insert(a3, r3, best, lab, k)
            i += 4
        while i < n:
            r = live[i]
            a = np.float32(0.0)
            for j in range(d):
                a += rows[r, j] * q[j]
            if a > kth:
                kth = _insert(a, r, best, lab, k)
            i += 1


def _require_numba() -> None:
    if numba is None:
        raise MissingPrerequisite("the FAISS index's exact scan needs numba: pip install 'wavegraph[graph]'")
