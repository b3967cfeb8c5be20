"""Parameters, results and input checks of the hybrid index."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np

from wavegraph.sinks.faiss.errors import InvalidVector

if TYPE_CHECKING:
    from wavegraph.settings import VectorSettings

__all__ = [
    "EXACT_WORK",
    "FP16_GRAPH_WORK",
    "Hit",
    "HybridParams",
    "Row",
    "as_matrix",
    "as_unit_matrix",
    "check_name",
]

Row = tuple[str, str, str, np.ndarray]

# Rows x dimensions one exact scan may cost before the HNSW stage pays for itself. Measured on 2 shared
# cores, one faiss thread: an exact scan and an HNSW20 search (ef 80-96) cost the same near 5,000 rows at
# 384-d and 2,500-3,000 rows at 784-d (a scan grows with n*d, a graph search hardly does). That was with
# faiss's flat scan; the float16 scan of .scan is ~2x faster, which moves the crossing up, but a graph
# gives the same answers in a bounded time while a scan's grows, so the threshold stays here.
EXACT_WORK = 2_000_000
# Rows x dimensions up to which the HNSW graph holds float16 codes (at most 32 MB of them, any dim). There
# a float32 HNSW-flat sits in cache, and 4-bit codes, whose decoding costs more than a float16 load, made
# the graph 1.3-1.6x slower than it; float16 codes made it 0.65-0.7x (measured, 5,102 x 784, 10,416 x 384).
FP16_GRAPH_WORK = 16_000_000


@dataclass(frozen=True)
class HybridParams:
    """Parameters of the hybrid index (``from_settings`` fills them from ``VectorSettings``).

    ``min_train``: rows before there is an HNSW stage (searches are exact below it); ``None`` picks
    ``max(1024, EXACT_WORK // dim)`` (5,208 rows at 384-d, 2,551 at 784-d), where an exact scan stops
    being cheaper than the graph. ``fp16_graph_below``: up to this many rows the graph holds float16
    codes (no rerank needed: its distances are the rerank's); from it on, 4-bit codes and the float16
    rerank (0.24 of flat); ``None`` picks ``FP16_GRAPH_WORK // dim`` (41,666 at 384-d, 20,408 at 784-d).
    ``exact_below``: a tenant/kind filter selecting at most this many rows
    *and* less than ``graph_min_fraction`` of the index is searched exactly (filtered graph search loses
    recall below ~10 % selectivity); a filter selecting fewer than the HNSW threshold is always exact.
    ``sq4_ef_scale``: the 4-bit graph ranks by approximate distances, so it explores ``sq4_ef_scale``
    times the efSearch that HNSW-flat uses. At efSearch 64 it trailed HNSW20-flat by 0.0004-0.002
    recall@10 (the same with a graph built from exact distances: the traversal, not the graph, costs it);
    at 1.25 (ef 80) it matched or beat it at 1,000-50,000 rows, 384-d and 784-d, except at 40,816 x 784
    (-0.0007) while its links were built from 4-bit distances. Since they are built from float16
    distances (:meth:`State.train_hnsw`) ef 80 matches it there too (0.9991-0.9992 against 0.9991, the
    same as ef 96; 100,000 WordNet glosses: 0.9958 against 0.9939), at ~0.88x the latency of ef 96, so
    the scale is 1.25, as for the float16 graph (was 1.5; at 1.5 the 4-bit graph's p95 was 1.59x
    HNSW20-flat's at 40,816 x 784 on an AVX2 machine, over the 1.5 target). ``ef_scale`` applies to the
    float16 graph (float16 distances: it matches HNSW-flat at equal ef; 1.25 gives it a margin at
    0.7-0.8x of HNSW-flat's latency).
    ``calibrate``: once a graph exists, the index times the scan and the graph on queries near its own
    rows (:mod:`.calibrate`) and keeps scanning while that is faster on this machine; ``False`` uses the
    graph from the threshold on, whatever the machine.
    """

    dim: int = 384
    k_prime: int = 64  # candidates from HNSW (at least 2k)
    ef_search: int = 64  # HNSW efSearch of an HNSW-flat index with the same recall target
    ef_scale: float = 1.25  # the float16 graph's efSearch is ceil(ef_search * ef_scale)
    sq4_ef_scale: float = 1.25  # the 4-bit graph's
    hnsw_m: int = 20  # 1 M x 384: graph ~177 B + SQ4 192 B = 0.24 of flat float32
    ef_construction: int = 160
    min_train: int | None = None  # rows before the HNSW stage; None: max(1024, EXACT_WORK // dim)
    fp16_graph_below: int | None = None  # rows with float16 graph codes; None: FP16_GRAPH_WORK // dim
    train_size: int = 100_000  # rows used to train the 4-bit quantizer
    exact_below: int = 10_000  # see the class docstring
    graph_min_fraction: float = 0.1
    max_ef: int = 1024
    max_tombstone_fraction: float = 0.2
    device: Literal["auto", "cpu", "gpu"] = "auto"
    calibrate: bool = True  # measure scan vs graph on this machine once a graph exists (see .calibrate)

    def __post_init__(self) -> None:
        scales = min(self.ef_scale, self.sq4_ef_scale)
        if self.dim < 2 or self.k_prime < 1 or self.ef_search < 1 or self.hnsw_m < 2 or scales < 1:
            raise ValueError(f"invalid HybridParams: {self}")
        if self.min_train is not None and self.min_train < 256:
            raise ValueError("HybridParams needs min_train >= 256")
        if self.train_size < self.hnsw_threshold:
            raise ValueError("HybridParams needs min_train <= train_size")
        if not 0 < self.max_tombstone_fraction <= 1 or not 0 <= self.graph_min_fraction <= 1:
            raise ValueError("max_tombstone_fraction and graph_min_fraction must be fractions")

    @classmethod
    def from_settings(cls, vector: VectorSettings, **overrides: Any) -> HybridParams:
        """Build from ``settings.vector``; fields the settings do not (yet) carry keep their defaults."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if hasattr(vector, name):
                values[name] = getattr(vector, name)
        values.update(overrides)
        return cls(**values)

    @property
    def sq4_threshold(self) -> int:
        """Rows from which the graph holds 4-bit codes (+ the float16 rerank) instead of float16 codes."""
        below = self.fp16_graph_below if self.fp16_graph_below is not None else FP16_GRAPH_WORK // self.dim
        return max(self.hnsw_threshold, below)

    @property
    def hnsw_threshold(self) -> int:
        """Rows at which the HNSW stage is built (``min_train``, or its dimension-aware default)."""
        if self.min_train is not None:
            return self.min_train
        return min(self.train_size, max(1024, EXACT_WORK // self.dim))

    def candidates(self, k: int) -> int:
        """k′: how many graph candidates get the exact rerank."""
        return max(self.k_prime, 2 * k)

    def graph_ef(self, k: int, fraction: float = 1.0, codes: str = "fp16") -> int:
        """efSearch of the graph (``codes`` "fp16" or "sq4") for ``k`` results when a filter selects
        ``fraction`` of the rows: ``ef_search * scale / sqrt(fraction)``, at least k′, at most
        ``max(max_ef, k′)``."""
        kc = self.candidates(k)
        scale = self.sq4_ef_scale if codes == "sq4" else self.ef_scale
        ef = math.ceil(self.ef_search * scale / math.sqrt(max(fraction, 1e-12)))
        return min(max(self.max_ef, kc), max(kc, ef))


class Hit(msgspec.Struct, frozen=True, gc=False):
    """One search result: the stored key and its cosine similarity to the query (immutable, hashable).

    A msgspec Struct built in C: a frozen dataclass's ``__init__`` took ~2 µs a hit once a scan had
    flushed the caches; ten NamedTuples (whose ``__new__`` is Python code) 7.9 µs p50 with their lookups
    after a 637 x 384 scan, ten of these 4.0 µs. Untracked
    by the garbage collector (``gc=False``: it holds only strings and a float, so it can be in no cycle);
    a search then adds one tracked list, not k tuples, to the collector's count."""

    tenant: str
    kind: str
    id: str
    score: float


def as_matrix(vectors: Any, dim: int, what: str) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` matrix (one vector becomes one row), or
    :class:`InvalidVector` naming what is wrong with its type or shape. Values are not checked here."""
    if type(vectors) is np.ndarray and vectors.dtype == np.float32:
        arr = vectors
    else:
        try:
            arr = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidVector(f"{what}: not a numeric vector ({exc})") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        got = arr.shape[-1] if arr.ndim >= 1 else "a scalar"
        raise InvalidVector(f"{what}: expected dimension {dim}, got {got} (shape {arr.shape})")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def as_unit_matrix(vectors: Any, dim: int, what: str) -> np.ndarray:
    """Validate and L2-normalise ``vectors`` -> contiguous float32 ``(n, dim)``.

    One pass for the squared norms; only a non-finite or zero norm runs the checks that name the bad row
    (NaN/infinity, too large for float32, all zeros). One row (a query) takes a BLAS dot, many rows an
    einsum: the same vector may differ in its last bit between the two, never more."""
    arr = as_matrix(vectors, dim, what)
    if arr.shape[0] == 1:  # one query: few numpy calls (each costs ~10-20 µs once a scan flushed caches)
        try:  # no errstate here (it costs as much as the dot): overflow warns, or raises as an error
            square = float(np.dot(arr[0], arr[0]))
        except RuntimeWarning:
            square = math.inf
        if not 0.0 < square < math.inf:
            _diagnose(arr, np.array([square]), what)
        return arr * np.float32(1.0 / math.sqrt(square))  # a new C-contiguous float32 array
    with np.errstate(over="ignore", invalid="ignore"):
        squares = np.einsum("ij,ij->i", arr, arr)
    if not (np.isfinite(squares).all() and (squares > 0).all()):
        _diagnose(arr, squares, what)
    return np.ascontiguousarray(arr / np.sqrt(squares)[:, None], dtype=np.float32)


def _diagnose(arr: np.ndarray, squares: np.ndarray, what: str) -> None:
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InvalidVector(f"{what}: row {bad} holds NaN or infinity")
    if not np.isfinite(squares).all():
        bad = int(np.flatnonzero(~np.isfinite(squares))[0])
        raise InvalidVector(f"{what}: row {bad} is too large to normalise in float32")
    raise InvalidVector(f"{what}: row {int(np.flatnonzero(squares <= 0)[0])} is all zeros")


def check_name(value: object, what: str) -> None:
    """Tenants and kinds are non-empty strings."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
