"""Row storage of the hybrid index: float16 rows in a memory-mapped faiss file, and small numpy columns.

The row file *is* a faiss ``IndexScalarQuantizer(dim, QT_fp16, METRIC_INNER_PRODUCT)`` file: the header
that ``faiss.write_index`` writes for an empty one (81 bytes), then row i's float16 code at
``header + i * 2 * dim``, then unused capacity. numpy appends rows and patches the two counts in the
header (``ntotal`` at byte 8, the code vector's byte size in the header's last 8 bytes); faiss reads it
back with ``IO_FLAG_MMAP_IFC``, which maps the codes instead of copying them. So the rerank of a 4-bit
graph's candidates and the exact search of a small filter run in faiss's SIMD float16 kernels straight
from the page cache, and no row is resident twice. numpy's own float16 -> float32 cast is scalar (~3 ns
a value here), which is what made the former numpy rerank and exact path slow.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from wavegraph.sinks.faiss.errors import IndexCorrupt, load_faiss

__all__ = ["Grow", "RowStore", "Subset"]

_NTOTAL_AT = 8  # fourcc (4) + d (4), then ntotal as int64


class Grow:
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


def _empty_header(dim: int) -> bytes:
    faiss = load_faiss()
    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    return bytes(faiss.serialize_index(index).tobytes())


class RowStore:
    """Float16 rows of faiss ids 0..count-1 in ``path`` (see the module docstring). Appends grow the file
    by half its capacity; :meth:`faiss_view` is the mapped faiss index over the first ``count`` rows."""

    def __init__(self, path: Path, dim: int, count: int = 0) -> None:
        self.path, self.dim, self.count = path, dim, count
        self.row_bytes = 2 * dim
        header = _empty_header(dim)
        self.header = len(header)
        self._codes_size_at = self.header - 8
        if not path.exists():
            path.write_bytes(header)
        else:
            with path.open("rb") as fh:
                head = fh.read(self.header)
            if head[:_NTOTAL_AT] != header[:_NTOTAL_AT] or head[16 : self._codes_size_at] != header[16:-8]:
                raise IndexCorrupt(f"{path}: not a {dim}-d float16 row file")
        size = path.stat().st_size
        if size < self.header + count * self.row_bytes:
            held = max(0, size - self.header) // self.row_bytes
            raise IndexCorrupt(f"{path}: holds {held} rows, the manifest says {count}")
        self._map: np.memmap[Any, np.dtype[np.uint8]] | None = None
        self._rows: np.ndarray | None = None
        self._bits: np.ndarray | None = None
        self._bits_view: np.ndarray | None = None
        self._view: Any = None
        self._capacity = (size - self.header) // self.row_bytes
        if self._capacity == 0:
            self._resize(1024)
        else:
            self._open()
        self._write_counts()

    def _open(self) -> None:
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r+")
        body = self._map[self.header : self.header + self._capacity * self.row_bytes]
        self._rows = body.view(np.float16).reshape(self._capacity, self.dim)
        self._bits = np.asarray(self._rows).view(np.uint16)  # a plain ndarray: what numba reads
        self._bits_view = None

    def _resize(self, capacity: int) -> None:
        if self._map is not None:
            self._map.flush()
            self._map = self._rows = self._bits = self._bits_view = None
        with self.path.open("r+b") as fh:
            fh.truncate(self.header + capacity * self.row_bytes)
        self._capacity = capacity
        self._open()

    def _write_counts(self) -> None:
        assert self._map is not None
        self._map[_NTOTAL_AT : _NTOTAL_AT + 8] = np.frombuffer(struct.pack("<q", self.count), np.uint8)
        size = struct.pack("<Q", self.count * self.row_bytes)
        self._map[self._codes_size_at : self._codes_size_at + 8] = np.frombuffer(size, np.uint8)
        self._view = None  # the mapped faiss index is re-read at the next search

    @property
    def rows(self) -> np.ndarray:
        """The stored rows, ``(count, dim)`` float16 (a view of the mapped file)."""
        if self._rows is None:
            raise RuntimeError(f"{self.path}: the index was closed")
        return self._rows[: self.count]

    @property
    def bits(self) -> np.ndarray:
        """The stored rows' float16 bit patterns, ``(count, dim)`` uint16 (the same mapped memory as
        :attr:`rows`): what the exact scan of :mod:`.scan` reads."""
        view = self._bits_view  # one slice per count, not per query (a slice is ~1 µs after a scan)
        if view is not None and len(view) == self.count:
            return view
        if self._bits is None:
            raise RuntimeError(f"{self.path}: the index was closed")
        view = self._bits_view = self._bits[: self.count]
        return view

    def append(self, vectors: np.ndarray) -> None:
        need = self.count + len(vectors)
        if need > self._capacity:
            self._resize(max(need, self._capacity + self._capacity // 2))
        assert self._rows is not None
        self._rows[self.count : need] = vectors.astype(np.float16)
        self.count = need
        self._write_counts()

    def gather(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` as float32 (numpy's cast: for training and rebuilds, not for searches)."""
        return np.asarray(self.rows[ids], dtype=np.float32)

    def faiss_view(self) -> Any:
        """``IndexScalarQuantizer(QT_fp16, inner product)`` over the first ``count`` rows, mapped from the
        file (no copy). Valid until the next :meth:`append`."""
        if self._view is None:
            if self._map is None:
                raise RuntimeError(f"{self.path}: the index was closed")
            faiss = load_faiss()
            view = faiss.read_index(str(self.path), faiss.IO_FLAG_MMAP_IFC)
            if view.ntotal != self.count or view.d != self.dim:
                raise IndexCorrupt(f"{self.path}: faiss reads {view.ntotal} rows, expected {self.count}")
            self._view = view
        return self._view

    def flush(self) -> None:
        if self._map is not None:
            self._map.flush()

    def close(self) -> None:
        self.flush()
        self._map = self._rows = self._bits = self._bits_view = self._view = None

    @property
    def file_bytes(self) -> int:
        return self.header + self._capacity * self.row_bytes


class Subset:
    """The live rows of one (tenant[, kind]) filter, as a bitmap for faiss and a list of row numbers."""

    def __init__(self) -> None:
        self.covered = 0
        self.bitmap = np.zeros(128, dtype=np.uint8)
        self.ids = Grow(np.int64)
        self._selector: tuple[Any, int, Any] | None = None  # (bitmap it points at, bytes, selector)

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

    def selector(self) -> Any:
        """A ``faiss.IDSelectorBitmap`` over rows ``0..covered-1`` (it reads the bitmap in place, so
        clears show at once; rebuilt when the bitmap grows or more rows are covered)."""
        nbytes = (self.covered + 7) // 8
        cached = self._selector
        if cached is None or cached[0] is not self.bitmap or cached[1] != nbytes:
            faiss = load_faiss()
            sel = faiss.IDSelectorBitmap(nbytes, faiss.swig_ptr(self.bitmap))
            cached = self._selector = (self.bitmap, nbytes, sel)
        return cached[2]

    @property
    def nbytes(self) -> int:
        return int(self.bitmap.nbytes + self.ids.buf.nbytes)
