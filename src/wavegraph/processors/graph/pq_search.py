"""A wall-clock-budgeted search over Node2Vec's (p, q), scored by link-prediction AUC.

**Evaluation.** A seeded fraction of the (undirected) edges is held out (:func:`split_edges`): a
random spanning forest is never held out, so the training graph keeps the components of the full
graph; as many non-edges are sampled as negatives. Each candidate trains Node2Vec on the rest and
scores a pair by the cosine similarity of its two embeddings; the score of the candidate is
``sklearn.metrics.roc_auc_score`` over the held-out edges (label 1) and the negatives (label 0).

**Search.** An anytime random search over a log₂ grid (default ``p, q ∈ {1/4, 1/2, 1, 2, 4}``):
``(1, 1)`` — plain DeepWalk-like walks, the usual baseline — goes first, then the other grid points
in a seeded random order. It needs no trial to finish before the next is chosen, so stopping at any
time leaves the best candidate seen so far, and every trial costs the same.

**Stop rule.** The clock is read exactly once when the search starts (``t0``) and exactly once
after each trial (``t_k``); nothing else reads it. The search stops after trial ``k`` as soon as
``t_k - t0 >= 60 * max_minutes`` (or when the grid is exhausted), so it always runs at least one
trial and may overrun the budget by at most one trial. With a clock that advances ``d`` seconds per
read it therefore runs exactly ``ceil(60 * max_minutes / d)`` trials: ``max_minutes=0.1`` (6 s) with
``d = 3`` or ``d = 4`` gives exactly 2.

On stop it writes ``best_pq.json``: ``{p, q, dataset_hash, score, metric: "auc", trials, ...}``
where ``dataset_hash`` is :func:`~wavegraph.processors.graph.state.dataset_hash` of the input graph.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
from sklearn.metrics import roc_auc_score

from wavegraph.errors import WavegraphError
from wavegraph.processors.graph.graphwave import undirected_adjacency
from wavegraph.processors.graph.node2vec import Node2VecConfig, node2vec_embed
from wavegraph.processors.graph.state import EdgeList, GraphState, dataset_hash

DEFAULT_VALUES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
BEST_PQ_FILE = "best_pq.json"


class BestPQMismatch(WavegraphError):
    """``best_pq.json`` is missing, unreadable, or was computed on another dataset."""


@dataclass(frozen=True)
class LinkSplit:
    """Training adjacency plus held-out positive edges and sampled negative pairs (``(m, 2)`` each)."""

    train: sp.csr_matrix
    positives: np.ndarray
    negatives: np.ndarray


@dataclass(frozen=True)
class Trial:
    """One evaluated candidate."""

    p: float
    q: float
    score: float
    seconds: float


@dataclass(frozen=True)
class PQSearchResult:
    """The best candidate, every trial in order, and why the search stopped."""

    p: float
    q: float
    score: float
    dataset_hash: str
    trials: list[Trial] = field(default_factory=list)
    stopped: Literal["budget", "grid_exhausted"] = "budget"
    elapsed_s: float = 0.0
    path: Path | None = None


def split_edges(adjacency: Any, test_fraction: float = 0.1, seed: int = 0) -> LinkSplit:
    """Hold out ``test_fraction`` of the undirected edges (never a spanning-forest edge, so no component
    of the graph falls apart) and sample as many node pairs that are not edges as negatives.

    When fewer non-forest edges exist than requested, all of them are held out.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    a = undirected_adjacency(adjacency)
    n = a.shape[0]
    upper = sp.triu(a, k=1).tocoo()
    edges = np.stack([upper.row, upper.col], axis=1).astype(np.int64)
    m = edges.shape[0]
    if m == 0:
        raise ValueError("the graph has no edge to hold out")
    # Random spanning forest: minimum spanning tree under random positive weights.
    random_w = sp.csr_matrix((rng.uniform(1.0, 2.0, m), (edges[:, 0], edges[:, 1])), shape=(n, n))
    forest = csgraph.minimum_spanning_tree(random_w).tocoo()
    lo, hi = np.minimum(forest.row, forest.col).astype(np.int64), np.maximum(forest.row, forest.col)
    in_forest = np.isin(edges[:, 0] * n + edges[:, 1], lo * n + hi)
    candidates = np.flatnonzero(~in_forest)
    n_test = min(max(1, round(test_fraction * m)), candidates.size)
    if n_test == 0:
        raise ValueError("every edge is a bridge of a spanning forest: nothing can be held out")
    held = rng.choice(candidates, size=n_test, replace=False)
    positives = edges[held]
    keep = np.ones(m, dtype=bool)
    keep[held] = False
    kept = edges[keep]
    w = np.asarray(a[kept[:, 0], kept[:, 1]]).ravel()
    train = sp.csr_matrix(
        (
            np.concatenate([w, w]),
            (np.concatenate([kept[:, 0], kept[:, 1]]), np.concatenate([kept[:, 1], kept[:, 0]])),
        ),
        shape=(n, n),
    )
    train.sort_indices()
    negatives = _sample_non_edges(a, n_test, rng)
    return LinkSplit(train=train, positives=positives, negatives=negatives)


def link_auc(embeddings: np.ndarray, split: LinkSplit) -> float:
    """ROC AUC of the cosine similarity of node embeddings: held-out edges vs negative pairs."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0, norms, 1.0)
    pairs = np.concatenate([split.positives, split.negatives])
    scores = np.einsum("ij,ij->i", unit[pairs[:, 0]], unit[pairs[:, 1]])
    labels = np.concatenate([np.ones(len(split.positives)), np.zeros(len(split.negatives))])
    return float(roc_auc_score(labels, scores))


def default_grid(values: Sequence[float] = DEFAULT_VALUES, seed: int = 0) -> list[tuple[float, float]]:
    """Every (p, q) over ``values``: (1, 1) first when present, the rest in a seeded random order."""
    pairs = [(float(p), float(q)) for p in values for q in values]
    first = [pq for pq in pairs if pq == (1.0, 1.0)]
    rest = [pq for pq in pairs if pq != (1.0, 1.0)]
    order = np.random.default_rng(seed).permutation(len(rest))
    return first + [rest[i] for i in order]


def search_pq(
    graph: GraphState | EdgeList | Any,
    *,
    max_minutes: float,
    out: str | Path | None = BEST_PQ_FILE,
    grid: Sequence[tuple[float, float]] | None = None,
    config: Node2VecConfig = Node2VecConfig(),
    test_fraction: float = 0.1,
    seed: int = 0,
    clock: Callable[[], float] = time.monotonic,
    on_trial: Callable[[Trial], None] | None = None,
    data_hash: str | None = None,
) -> PQSearchResult:
    """Search (p, q) until the wall-clock budget is spent (see the module docstring for the rule).

    ``graph`` is a :class:`GraphState` or :class:`EdgeList` (hashed with ``dataset_hash``), or an
    adjacency matrix together with ``data_hash``. ``out`` is where ``best_pq.json`` goes (``None``:
    not written). ``on_trial`` is called after every trial (progress display).
    """
    if max_minutes <= 0:
        raise ValueError(f"max_minutes must be > 0, got {max_minutes}")
    adjacency, digest = _graph_and_hash(graph, data_hash)
    split = split_edges(adjacency, test_fraction, seed)
    candidates = list(grid) if grid is not None else default_grid(seed=seed)
    if not candidates:
        raise ValueError("the grid is empty")
    budget_s = 60.0 * max_minutes
    trials: list[Trial] = []
    t0 = clock()
    last = t0
    stopped: Literal["budget", "grid_exhausted"] = "grid_exhausted"
    for p, q in candidates:
        emb = node2vec_embed(split.train, p=p, q=q, config=config)
        score = link_auc(emb, split)
        now = clock()
        trial = Trial(p=float(p), q=float(q), score=score, seconds=now - last)
        last = now
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
        if now - t0 >= budget_s:
            stopped = "budget"
            break
    best = max(trials, key=lambda t: t.score)  # first of equal scores wins
    result = PQSearchResult(
        p=best.p, q=best.q, score=best.score, dataset_hash=digest, trials=trials,
        stopped=stopped, elapsed_s=last - t0,
    )  # fmt: skip
    if out is not None:
        path = write_best_pq(result, out, extra={"budget_s": budget_s, "test_fraction": test_fraction,
                                                 "seed": seed, "config": asdict(config)})  # fmt: skip
        result = replace(result, path=path)
    return result


def write_best_pq(result: PQSearchResult, out: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``best_pq.json`` atomically: ``{p, q, dataset_hash, score, metric, trials, ...}``."""
    path = Path(out)
    payload: dict[str, Any] = {
        "p": result.p,
        "q": result.q,
        "dataset_hash": result.dataset_hash,
        "score": result.score,
        "metric": "auc",
        "trials": [asdict(t) for t in result.trials],
        "stopped": result.stopped,
        "elapsed_s": result.elapsed_s,
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    return path


def load_best_pq(path: str | Path, graph: GraphState | EdgeList | str) -> dict[str, Any]:
    """Read ``best_pq.json`` and check it belongs to ``graph`` (a state, edge list or a hash string).

    Raises :class:`BestPQMismatch` when the file is absent, malformed or its hash differs.
    """
    path = Path(path)
    if not path.is_file():
        raise BestPQMismatch(f"{path}: no such file")
    try:
        data = orjson.loads(path.read_bytes())
        p, q, recorded = float(data["p"]), float(data["q"]), str(data["dataset_hash"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BestPQMismatch(f"{path}: not a best_pq.json file ({exc})") from exc
    expected = graph if isinstance(graph, str) else dataset_hash(graph)
    if recorded != expected:
        raise BestPQMismatch(f"{path}: computed on dataset {recorded[:12]}…, this one is {expected[:12]}…")
    if not (math.isfinite(p) and math.isfinite(q) and p > 0 and q > 0):
        raise BestPQMismatch(f"{path}: invalid p={p}, q={q}")
    return dict(data)


def _graph_and_hash(graph: Any, data_hash: str | None) -> tuple[sp.csr_matrix, str]:
    if isinstance(graph, EdgeList):
        state = GraphState.from_edges(graph.src, graph.dst, graph.weight)
        return undirected_adjacency(state), data_hash or dataset_hash(graph)
    if isinstance(graph, GraphState):
        return undirected_adjacency(graph), data_hash or dataset_hash(graph)
    if data_hash is None:
        raise ValueError("pass data_hash with a bare adjacency matrix")
    return undirected_adjacency(graph), data_hash


def _sample_non_edges(a: sp.csr_matrix, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct unordered node pairs ``u < v`` that are not edges (rejection sampling)."""
    n = a.shape[0]
    upper = sp.triu(a, k=1).tocoo()
    edge_keys = np.sort(upper.row.astype(np.int64) * n + upper.col)
    if n * (n - 1) // 2 - edge_keys.size < count:
        raise ValueError(f"fewer than {count} non-edges exist")
    chosen = np.empty(0, np.int64)
    while chosen.size < count:
        u = rng.integers(0, n, size=2 * count + 16)
        v = rng.integers(0, n, size=u.size)
        lo, hi = np.minimum(u, v), np.maximum(u, v)
        keys = (lo * n + hi)[lo != hi]
        keys = np.concatenate([chosen, keys[~np.isin(keys, edge_keys)]])
        _, first = np.unique(keys, return_index=True)
        chosen = keys[np.sort(first)][:count]
    return np.stack([chosen // n, chosen % n], axis=1)


def node2vec_from_edges(
    edges: EdgeList,
    *,
    p: float = 1.0,
    q: float = 1.0,
    config: Node2VecConfig = Node2VecConfig(),
    best_pq: str | Path | None = None,
) -> tuple[list[str], np.ndarray, tuple[float, float]]:
    """Node2Vec on an edge list (direction ignored): ``(node ids, vectors, (p, q) used)``.

    With ``best_pq`` the (p, q) come from that ``best_pq.json`` after checking that its dataset hash is
    this edge list's (``BestPQMismatch`` otherwise). For ``wavegraph graph node2vec``; write with
    ``write_node_table(out, ids, {"n2v": vectors})``.
    """
    if best_pq is not None:
        chosen = load_best_pq(best_pq, edges)
        p, q = float(chosen["p"]), float(chosen["q"])
    state = GraphState.from_edges(edges.src, edges.dst, edges.weight)
    vectors = node2vec_embed(undirected_adjacency(state), p=p, q=q, config=config)
    return list(state.node_ids), vectors, (p, q)
