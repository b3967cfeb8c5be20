r"""Node2Vec (Grover & Leskovec, KDD 2016): biased second-order random walks + skip-gram.

A walk that just moved ``t → v`` picks the next node :math:`x \in N(v)` with probability

.. math:: P(x \mid t, v) = \frac{\alpha_{pq}(t, x)\, w_{vx}}{\sum_{y \in N(v)} \alpha_{pq}(t, y)\, w_{vy}},
   \qquad \alpha_{pq}(t, x) = \begin{cases} 1/p & x = t \\ 1 & x \in N(t) \\ 1/q & \text{otherwise}
   \end{cases}

(return parameter :math:`p`, in-out parameter :math:`q`); the first step is first order
(:math:`\propto w_{vx}`), and at :math:`p = q = 1` every step is. Sampling is by rejection under the
envelope :math:`e\,w_{vx}`, :math:`e = \max(1, 1/q)`, plus an "appendix" of height
:math:`1/p - e` on the return edge when :math:`1/p > e`: a proposal falls in the appendix with
probability :math:`(1/p - e) w_{vt} / (e W_v + (1/p - e) w_{vt})` and returns to :math:`t`;
otherwise :math:`x \propto w_{vx}` (binary search on the row's cumulative weights) is accepted with
probability :math:`\min(\alpha_{pq}(t, x), e) / e`. The edge test :math:`x \in N(t)` (a binary
search in the sorted row of :math:`t`) runs only when the acceptance draw falls between
:math:`\min(1, 1/q)` and :math:`\max(1, 1/q)`. After ``_MAX_REJECTIONS`` refusals the step is
drawn from the exact distribution instead, which keeps the result exact (each accepted draw already
follows the target) and bounds the work when :math:`p` or :math:`q` are extreme.

Walks run in parallel with numba; every walk has its own counter-based random stream
(SplitMix64 seeded by ``(seed, walk index)``), so results do not depend on the thread count.
Skip-gram training uses gensim's ``Word2Vec`` (``sg=1``, seeded, a process-independent hash).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

_MAX_REJECTIONS = 64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@dataclass(frozen=True)
class WalkGraph:
    """CSR arrays the walker reads: sorted neighbour rows and per-row cumulative weights."""

    indptr: np.ndarray  # int64, n + 1
    indices: np.ndarray  # int32, sorted within each row
    cumweights: np.ndarray  # float64, running sum of the weights within each row
    weighted: bool  # False when every weight is equal (uniform first-order step)

    @property
    def n_nodes(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @classmethod
    def from_adjacency(cls, adjacency: Any) -> WalkGraph:
        """From a square, symmetric, non-negative adjacency (SciPy sparse or dense)."""
        a = sp.csr_matrix(adjacency, dtype=np.float64)
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"adjacency must be square, got {a.shape}")
        a.eliminate_zeros()
        a.sum_duplicates()
        a.sort_indices()
        if a.data.size and a.data.min() < 0:
            raise ValueError("edge weights must be non-negative")
        indptr = a.indptr.astype(np.int64)
        data = a.data
        cum = np.cumsum(data)
        row_start = np.repeat(np.concatenate([[0.0], cum])[indptr[:-1]], np.diff(indptr))
        weighted = bool(data.size and not np.all(data == data[0]))
        return cls(indptr, a.indices.astype(np.int32), cum - row_start, weighted)


@dataclass(frozen=True)
class Node2VecConfig:
    """Walk and skip-gram settings (everything but ``p`` and ``q``)."""

    dim: int = 64
    walk_length: int = 40
    walks_per_node: int = 10
    window: int = 5
    epochs: int = 1
    negative: int = 5
    seed: int = 0
    workers: int = 2


@dataclass(frozen=True)
class WalkStats:
    """Walk throughput of one timed run."""

    walks: int
    steps: int
    seconds: float

    @property
    def walks_per_s(self) -> float:
        return self.walks / self.seconds if self.seconds > 0 else float("inf")

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")


def random_walks(
    graph: WalkGraph | Any,
    *,
    p: float = 1.0,
    q: float = 1.0,
    walk_length: int = 40,
    walks_per_node: int = 10,
    seed: int = 0,
    workers: int | None = None,
    starts: np.ndarray | None = None,
) -> np.ndarray:
    """Node2Vec walks, shape ``(n_walks, walk_length)``, int32 node indices, ``-1`` after a dead end.

    By default every node starts ``walks_per_node`` walks; each round visits the nodes in a fresh
    seeded random order. ``starts`` overrides the start nodes. ``workers`` caps numba's threads.
    """
    if p <= 0 or q <= 0:
        raise ValueError(f"p and q must be > 0, got p={p}, q={q}")
    if walk_length < 1:
        raise ValueError("walk_length must be >= 1")
    g = graph if isinstance(graph, WalkGraph) else WalkGraph.from_adjacency(graph)
    if starts is None:
        rng = np.random.default_rng(seed)
        starts = np.concatenate([rng.permutation(g.n_nodes) for _ in range(walks_per_node)])
    starts = np.ascontiguousarray(starts, dtype=np.int32)
    out = np.empty((starts.shape[0], walk_length), dtype=np.int32)
    if starts.shape[0] == 0:
        return out
    previous = numba.get_num_threads()
    if workers is not None:
        numba.set_num_threads(max(1, min(workers, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        _walk_kernel(
            g.indptr, g.indices, g.cumweights, g.weighted, starts, walk_length,
            1.0 / p, 1.0 / q, np.uint64(seed % 2**64), out,
        )  # fmt: skip
    finally:
        numba.set_num_threads(previous)
    return out


def walk_throughput(
    graph: WalkGraph | Any,
    *,
    p: float = 1.0,
    q: float = 1.0,
    walk_length: int = 40,
    walks_per_node: int = 10,
    seed: int = 0,
    workers: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> WalkStats:
    """Time one call of :func:`random_walks` (compile it first: numba caches the kernel on disk).

    ``steps`` counts transitions, i.e. the valid entries of each walk minus its start.
    """
    g = graph if isinstance(graph, WalkGraph) else WalkGraph.from_adjacency(graph)
    random_walks(g, p=p, q=q, walk_length=2, starts=np.zeros(min(1, g.n_nodes), np.int32))  # warm-up
    start = clock()
    walks = random_walks(
        g, p=p, q=q, walk_length=walk_length, walks_per_node=walks_per_node, seed=seed, workers=workers
    )
    seconds = clock() - start
    steps = int((walks >= 0).sum()) - walks.shape[0]
    return WalkStats(walks=int(walks.shape[0]), steps=steps, seconds=seconds)


def train_skipgram(walks: np.ndarray, n_nodes: int, config: Node2VecConfig = Node2VecConfig()) -> np.ndarray:
    """Skip-gram (gensim ``Word2Vec``, ``sg=1``, negative sampling) over the walks → ``(n_nodes, dim)``.

    Nodes that appear in no walk get a zero vector.
    """
    from gensim.models import Word2Vec

    vocab = np.array([str(i) for i in range(n_nodes)], dtype=object)
    full = (walks >= 0).all(axis=1)
    sentences: list[list[str]] = vocab[walks[full]].tolist()
    sentences += [vocab[w[w >= 0]].tolist() for w in walks[~full]]
    model = Word2Vec(
        sentences=sentences,
        vector_size=config.dim,
        window=config.window,
        min_count=0,
        sg=1,
        hs=0,
        negative=config.negative,
        sample=0.0,
        epochs=config.epochs,
        workers=config.workers,
        seed=config.seed,
        hashfxn=_stable_hash,
    )
    out = np.zeros((n_nodes, config.dim), dtype=np.float32)
    for key, row in model.wv.key_to_index.items():
        out[int(key)] = model.wv.vectors[row]
    return out


def node2vec_embed(
    adjacency: WalkGraph | Any,
    *,
    p: float = 1.0,
    q: float = 1.0,
    config: Node2VecConfig = Node2VecConfig(),
) -> np.ndarray:
    """Node2Vec embeddings ``(n_nodes, config.dim)``: walks (:func:`random_walks`) + skip-gram."""
    g = adjacency if isinstance(adjacency, WalkGraph) else WalkGraph.from_adjacency(adjacency)
    walks = random_walks(
        g, p=p, q=q, walk_length=config.walk_length, walks_per_node=config.walks_per_node,
        seed=config.seed, workers=config.workers,
    )  # fmt: skip
    return train_skipgram(walks, g.n_nodes, config)


def transition_probabilities(graph: WalkGraph | Any, prev: int, cur: int, p: float, q: float) -> np.ndarray:
    """Exact :math:`P(x \\mid t=prev, v=cur)` over ``N(cur)`` in row order (for tests and inspection)."""
    g = graph if isinstance(graph, WalkGraph) else WalkGraph.from_adjacency(graph)
    lo, hi = int(g.indptr[cur]), int(g.indptr[cur + 1])
    nbrs = g.indices[lo:hi]
    w = np.diff(np.concatenate([[0.0], g.cumweights[lo:hi]]))
    prev_row = g.indices[g.indptr[prev] : g.indptr[prev + 1]]
    alpha = np.where(nbrs == prev, 1.0 / p, np.where(np.isin(nbrs, prev_row), 1.0, 1.0 / q))
    unnorm = alpha * w
    return np.asarray(unnorm / unnorm.sum())


def _stable_hash(text: str) -> int:
    """gensim seeds each word vector with ``hashfxn(word + str(seed))``; Python's ``hash`` of a str
    changes per process, CRC-32 does not."""
    return zlib.crc32(text.encode())


# -- numba kernels ---------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _next_uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """SplitMix64: advance ``state`` and return a uniform double in [0, 1)."""
    state = state + _GOLDEN
    return state, float(_scramble(state) >> _S11) * _TO_UNIT


@njit(cache=True, inline="always")
def _scramble(z: np.uint64) -> np.uint64:
    """SplitMix64's output function: a bijective 64-bit mixer."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _first_order(indices: Any, cum: Any, weighted: bool, lo: int, hi: int, u: float) -> int:
    """A neighbour of the row ``[lo, hi)`` drawn proportionally to its weight."""
    if not weighted:
        k = lo + int(u * (hi - lo))
        return int(indices[min(k, hi - 1)])
    target = u * cum[hi - 1]
    a, b = lo, hi - 1
    while a < b:  # first k with cum[k] > target
        mid = (a + b) // 2
        if cum[mid] > target:
            b = mid
        else:
            a = mid + 1
    return int(indices[a])


@njit(cache=True, inline="always")
def _find(indptr: Any, indices: Any, u: int, v: int) -> int:
    """Position of ``v`` in the sorted row of ``u``, or -1."""
    a, b = indptr[u], indptr[u + 1]
    while a < b:
        mid = (a + b) // 2
        x = indices[mid]
        if x == v:
            return int(mid)
        if x < v:
            a = mid + 1
        else:
            b = mid
    return -1


@njit(cache=True)
def _exact_step(
    indptr: Any, indices: Any, cum: Any, prev: int, cur: int, inv_p: float, inv_q: float, u: float
) -> int:
    """Draw from the exact second-order distribution (fallback after many rejections)."""
    lo, hi = indptr[cur], indptr[cur + 1]
    probs = np.empty(hi - lo)
    total = 0.0
    for k in range(lo, hi):
        x = indices[k]
        w = cum[k] - (cum[k - 1] if k > lo else 0.0)
        if x == prev:
            a = inv_p
        elif _find(indptr, indices, prev, x) >= 0:
            a = 1.0
        else:
            a = inv_q
        total += a * w
        probs[k - lo] = total
    target = u * total
    for k in range(hi - lo):
        if probs[k] > target:
            return int(indices[lo + k])
    return int(indices[hi - 1])


@njit(cache=True, inline="always")
def _second_order_step(
    indptr: Any,
    indices: Any,
    cum: Any,
    weighted: bool,
    prev: int,
    cur: int,
    inv_p: float,
    inv_q: float,
    state: np.uint64,
) -> tuple[np.uint64, int]:
    """One biased step by rejection under the envelope ``env = max(1, 1/q)`` times the first-order
    weights, plus an "appendix" of height ``1/p - env`` on the return edge when ``1/p > env``:
    a proposal lands in the appendix with probability ``appendix / (env * W + appendix)`` and then
    returns to ``prev`` directly; otherwise ``x ∝ w`` is accepted when ``v * env < α(x)`` (with
    ``α(prev)`` capped at ``env``). The edge test ``x ∈ N(prev)`` runs only when ``v * env`` falls
    between ``min(1, 1/q)`` and ``max(1, 1/q)``."""
    lo, hi = indptr[cur], indptr[cur + 1]
    env = max(1.0, inv_q)
    low = min(1.0, inv_q)
    appendix = 0.0
    if inv_p > env:
        k = _find(indptr, indices, cur, prev)
        w_prev = cum[k] - (cum[k - 1] if k > lo else 0.0)
        appendix = (inv_p - env) * w_prev
    main = env * cum[hi - 1]
    alpha_prev = min(inv_p, env)
    for _attempt in range(_MAX_REJECTIONS):
        if appendix > 0.0:
            state, r = _next_uniform(state)
            if r * (main + appendix) < appendix:
                return state, prev
        state, u = _next_uniform(state)
        cand = _first_order(indices, cum, weighted, lo, hi, u)
        state, v = _next_uniform(state)
        height = v * env
        if cand == prev:
            if height < alpha_prev:
                return state, cand
        elif height < low:
            return state, cand
        elif _find(indptr, indices, prev, cand) >= 0:
            if height < 1.0:
                return state, cand
        elif height < inv_q:
            return state, cand
    state, u = _next_uniform(state)
    return state, _exact_step(indptr, indices, cum, prev, cur, inv_p, inv_q, u)


@njit(cache=True, parallel=True, nogil=True)
def _walk_kernel(
    indptr: Any,
    indices: Any,
    cum: Any,
    weighted: bool,
    starts: Any,
    walk_length: int,
    inv_p: float,
    inv_q: float,
    seed: np.uint64,
    out: Any,
) -> None:
    first_order_only = inv_p == 1.0 and inv_q == 1.0
    for i in prange(starts.shape[0]):
        # Start each walk's stream at a scrambled point of the 2**64 cycle: adjacent seeds would
        # otherwise give overlapping (shifted) streams and correlated walks.
        state = _scramble(_scramble(np.uint64(seed) + _MIX2) ^ (np.uint64(i) * _GOLDEN))
        cur = int(starts[i])
        prev = -1
        out[i, 0] = cur
        for j in range(1, walk_length):
            lo, hi = indptr[cur], indptr[cur + 1]
            if lo == hi:
                for r in range(j, walk_length):
                    out[i, r] = -1
                break
            if prev < 0 or first_order_only:
                state, u = _next_uniform(state)
                nxt = _first_order(indices, cum, weighted, lo, hi, u)
            else:
                state, nxt = _second_order_step(
                    indptr, indices, cum, weighted, prev, cur, inv_p, inv_q, state
                )
            out[i, j] = nxt
            prev = cur
            cur = nxt
