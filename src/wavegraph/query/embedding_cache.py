"""An LMDB cache of query embeddings (text → vector) in front of another embedder, shared by every
API process of a host.

:class:`EmbeddingCache` has the embedder interface (``embed(texts) -> np.ndarray``, one float32 row per
text), so ``SearchService(..., embedder=EmbeddingCache.from_settings(settings, TextEmbedder()))`` works.
Texts found in the environment are answered from it; the others go to the wrapped embedder in one call,
then are stored. Keys are ``sha256(namespace NUL text)``; ``namespace`` names the wrapped embedder (its
class by default) so that changing the model never returns another model's vectors.

**Layout** (one LMDB environment at ``cache.lmdb_path``, ``map_size = cache.lmdb_max_bytes``):
``vectors`` (key → 8-byte recency stamp + float32 bytes), ``lru`` (stamp + key → empty, in stamp order)
and ``meta`` (the next stamp, the bytes stored). Each :meth:`embed` is one read transaction and, when
something changed, one write transaction; LMDB serialises writers across processes, so stamps and the
byte count stay exact with several API processes.

**Bound and eviction.** The stored payload (keys + values) is kept at most :data:`PAYLOAD_SHARE` (40 %) of
``max_bytes``: B-tree pages are about half full for 1.5 kB values and copy-on-write needs free pages, so
this leaves the map room to work. Past it, the least recently used entries (a hit renews an entry's
stamp) are removed first and counted in ``lmdb_evictions_total``. ``lmdb_hit_ratio`` is this process's
hits ÷ lookups; ``lmdb_requests_total{result=hit|miss}`` counts them.

**Failures never fail a query.** An environment that cannot be opened or read (corrupt file, wrong
format) is deleted and recreated with a logged warning; a full map (``MapFullError``) first evicts half
the entries and retries, then rebuilds. Whatever happens to the cache, :meth:`embed` returns the wrapped
embedder's vectors. Entries survive a restart (the file persists; writes are not fsynced one by one, so
a machine crash may lose the last few, never the file's integrity on ordered-write file systems).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import lmdb
import numpy as np
from prometheus_client import Counter, Gauge

from wavegraph.metrics import REGISTRY
from wavegraph.settings import Settings

__all__ = ["LMDB_EVICTIONS", "LMDB_HIT_RATIO", "LMDB_REQUESTS", "PAYLOAD_SHARE", "EmbeddingCache"]

log = logging.getLogger(__name__)

LMDB_EVICTIONS = Counter(
    "lmdb_evictions_total",
    "Query embeddings evicted from the LMDB cache (least recently used).",
    registry=REGISTRY,
)
LMDB_REQUESTS = Counter(
    "lmdb_requests_total",
    "Query-embedding cache lookups by result (hit, miss).",
    ["result"],
    registry=REGISTRY,
)
LMDB_HIT_RATIO = Gauge(
    "lmdb_hit_ratio", "Query-embedding cache hits / lookups (this process).", registry=REGISTRY
)

PAYLOAD_SHARE = 0.4
_STAMP = struct.Struct("!Q")
_NEXT, _BYTES = b"next_stamp", b"bytes"


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingCache:
    """``inner``'s embeddings, cached in the LMDB environment at ``path`` (see the module docstring).

    ``hits``, ``misses`` and ``evictions`` count this object's work; :meth:`close` closes the environment
    (also on garbage collection). Thread-safe (one :meth:`embed` at a time per object).
    """

    def __init__(self, inner: Embedder, path: Path, max_bytes: int, *, namespace: str | None = None) -> None:
        self.inner = inner
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.budget = int(max_bytes * PAYLOAD_SHARE)
        self.namespace = namespace or f"{type(inner).__module__}.{type(inner).__qualname__}"
        self.hits = self.misses = self.evictions = 0
        self._lock = threading.Lock()
        self._env: Any = None
        self._open()

    @classmethod
    def from_settings(cls, settings: Settings, inner: Embedder) -> EmbeddingCache:
        return cls(inner, settings.cache.lmdb_path, settings.cache.lmdb_max_bytes)

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    # --- the environment ----------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._connect()
        except (lmdb.Error, OSError) as exc:
            self._rebuild(f"cannot open it ({type(exc).__name__}: {exc})")

    def _connect(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        env = lmdb.open(str(self.path), map_size=self.max_bytes, max_dbs=3, sync=False, metasync=False)
        try:
            self._vectors = env.open_db(b"vectors")
            self._lru = env.open_db(b"lru")
            self._meta = env.open_db(b"meta")
        except lmdb.Error:
            env.close()
            raise
        self._env = env

    def _rebuild(self, why: str) -> None:
        log.warning("LMDB embedding cache at %s is rebuilt empty: %s", self.path, why)
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            self._connect()
        except (lmdb.Error, OSError) as exc:  # e.g. an unwritable path: go on without a cache
            log.warning("LMDB embedding cache at %s is off: %s", self.path, exc)
            self._env = None

    def close(self) -> None:
        if self._env is not None:
            try:
                self._env.sync(True)
            except lmdb.Error:
                pass
            self._env.close()
            self._env = None

    def __del__(self) -> None:
        self.close()

    def __len__(self) -> int:
        if self._env is None:
            return 0
        with self._env.begin(db=self._vectors) as txn:
            return int(txn.stat(self._vectors)["entries"])

    def stored_bytes(self) -> int:
        """The payload bytes stored (keys + values), as counted in ``meta``."""
        if self._env is None:
            return 0
        with self._env.begin(db=self._meta) as txn:
            raw = txn.get(_BYTES)
        return _STAMP.unpack(raw)[0] if raw else 0

    # --- embedding ----------------------------------------------------------------------------
    def key(self, text: str) -> bytes:
        return hashlib.sha256(self.namespace.encode() + b"\0" + text.encode()).digest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text, in order; the wrapped embedder computes only the texts not cached."""
        texts = list(texts)
        if not texts:
            return np.asarray(self.inner.embed([]), dtype=np.float32)
        with self._lock:
            keys = [self.key(t) for t in texts]
            found = self._read(keys)
            missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
            fresh: dict[bytes, np.ndarray] = {}
            if missing:
                vectors = np.asarray(self.inner.embed(missing), dtype=np.float32)
                fresh = {self.key(t): vectors[i] for i, t in enumerate(missing)}
            n_hit = sum(k in found for k in keys)
            self.hits += n_hit
            self.misses += len(keys) - n_hit
            LMDB_REQUESTS.labels("hit").inc(n_hit)
            LMDB_REQUESTS.labels("miss").inc(len(keys) - n_hit)
            LMDB_HIT_RATIO.set(self.hit_ratio)
            self._write(found, fresh)
            return np.stack([found[k][1] if k in found else fresh[k] for k in keys])

    def _read(self, keys: Sequence[bytes]) -> dict[bytes, tuple[bytes, np.ndarray]]:
        """key → (its stamp, its vector) for the keys stored; an unreadable environment is rebuilt."""
        out: dict[bytes, tuple[bytes, np.ndarray]] = {}
        if self._env is None:
            return out
        try:
            with self._env.begin(db=self._vectors) as txn:
                for key in dict.fromkeys(keys):
                    raw = txn.get(key)
                    if raw is not None and len(raw) > _STAMP.size and (len(raw) - _STAMP.size) % 4 == 0:
                        out[key] = (raw[: _STAMP.size], np.frombuffer(raw[_STAMP.size :], dtype=np.float32))
        except lmdb.Error as exc:
            self._rebuild(f"read failed ({type(exc).__name__}: {exc})")
            return {}
        return out

    def _write(self, found: dict[bytes, tuple[bytes, np.ndarray]], fresh: dict[bytes, np.ndarray]) -> None:
        for attempt in range(2):
            if self._env is None:
                return
            try:
                self._store(found, fresh)
                return
            except lmdb.MapFullError:
                if attempt == 0:
                    self._evict_fraction(0.5)
                    continue
                self._rebuild("the map is full even after evicting half of it")
                return
            except lmdb.Error as exc:
                self._rebuild(f"write failed ({type(exc).__name__}: {exc})")
                return

    def _store(self, found: dict[bytes, tuple[bytes, np.ndarray]], fresh: dict[bytes, np.ndarray]) -> None:
        with self._env.begin(write=True) as txn:
            stamp = _get_int(txn, self._meta, _NEXT)
            size = _get_int(txn, self._meta, _BYTES)
            for key, (old, vector) in found.items():  # renew: the entry is now the most recent
                txn.delete(old + key, db=self._lru)
                new = _STAMP.pack(stamp)
                stamp += 1
                txn.put(key, new + vector.tobytes(), db=self._vectors)
                txn.put(new + key, b"", db=self._lru)
            for key, vector in fresh.items():
                value = _STAMP.pack(stamp) + vector.tobytes()
                previous = txn.get(key, db=self._vectors)
                if previous is not None:  # another process stored it meanwhile: replace it
                    txn.delete(previous[: _STAMP.size] + key, db=self._lru)
                    size -= len(key) + len(previous)
                txn.put(key, value, db=self._vectors)
                txn.put(value[: _STAMP.size] + key, b"", db=self._lru)
                size += len(key) + len(value)
                stamp += 1
            size -= self._evict(txn, size - self.budget)
            txn.put(_NEXT, _STAMP.pack(stamp), db=self._meta)
            txn.put(_BYTES, _STAMP.pack(max(size, 0)), db=self._meta)

    def _evict(self, txn: Any, excess: int) -> int:
        """Remove the least recently used entries until ``excess`` bytes are freed; return the bytes."""
        freed = 0
        evicted = 0
        cursor = txn.cursor(db=self._lru)
        while freed < excess and cursor.first():
            lru_key = cursor.key()
            key = lru_key[_STAMP.size :]
            value = txn.pop(key, db=self._vectors)
            cursor.delete()
            if value is not None:
                freed += len(key) + len(value)
                evicted += 1
        self.evictions += evicted
        LMDB_EVICTIONS.inc(evicted)
        return freed

    def _evict_fraction(self, share: float) -> None:
        try:
            with self._env.begin(write=True) as txn:
                size = _get_int(txn, self._meta, _BYTES)
                freed = self._evict(txn, int(size * share))
                txn.put(_BYTES, _STAMP.pack(max(size - freed, 0)), db=self._meta)
        except lmdb.Error as exc:
            self._rebuild(f"eviction failed ({type(exc).__name__}: {exc})")


def _get_int(txn: Any, db: Any, key: bytes) -> int:
    raw = txn.get(key, db=db)
    return _STAMP.unpack(raw)[0] if raw else 0
