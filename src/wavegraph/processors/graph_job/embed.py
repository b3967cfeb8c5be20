"""The embedding recompute of the graph job: node vectors → Poincaré points → HAA (runs in a thread).

Input: an immutable :class:`CSRGraph` snapshot. The neighbourhood used by HAA (and by the spectral
embedding) is the undirected 0/1 adjacency without self-loops: ``u`` and ``v`` are neighbours when an
edge joins them in either direction, whatever its weight — the same neighbourhood as
``wavegraph graph haa`` (:func:`~wavegraph.processors.graph.haa.build_adjacency`, ``directed=False``).

Node vectors ``e_v`` (``dim`` columns) come from

- ``"spectral"`` (default): :func:`~wavegraph.processors.graph.haa.spectral_embedding`, deterministic;
- ``"node2vec"``: :func:`~wavegraph.processors.graph.node2vec.node2vec_embed` (p = q = 1) on the
  symmetrised weighted adjacency; needs the ``graph`` extra (numba, gensim).

then ``x_v = exp₀(e_v)`` and ``haa(v)`` = the attention-weighted gyromidpoint of ``v``'s neighbours
(:func:`~wavegraph.processors.graph.haa.haa`, curvature ``graph.curvature``, temperature
``graph.haa_temperature``). Both come back as float32 (what pgvector stores).

``cancel`` (a :class:`threading.Event`) is checked between stages: a cancelled recompute stops at the
next stage boundary by raising :class:`RecomputeCancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from wavegraph.errors import WavegraphError
from wavegraph.processors.graph import poincare as pb
from wavegraph.processors.graph.haa import haa, spectral_embedding
from wavegraph.processors.graph.state import CSRGraph
from wavegraph.settings import GraphSettings

__all__ = [
    "EmbeddingMethod",
    "EmbeddingParams",
    "NodeEmbeddings",
    "RecomputeCancelled",
    "compute_embeddings",
    "neighbour_adjacency",
]

EmbeddingMethod = Literal["spectral", "node2vec"]
Stage = Callable[[str], None]


class RecomputeCancelled(WavegraphError):
    """The recompute was cancelled (shutdown) between two stages."""


@dataclass(frozen=True)
class EmbeddingParams:
    method: EmbeddingMethod = "spectral"
    dim: int = 64
    curvature: float = -1.0
    temperature: float = 1.0
    seed: int = 0

    @classmethod
    def from_settings(cls, graph: GraphSettings, method: EmbeddingMethod | None = None) -> EmbeddingParams:
        # ``graph.embedding`` is the proposed setting naming the method; spectral until it exists.
        chosen: EmbeddingMethod = getattr(graph, "embedding", "spectral") if method is None else method
        return cls(chosen, graph.embedding_dim, graph.curvature, graph.haa_temperature)


@dataclass(frozen=True)
class NodeEmbeddings:
    """``points[v]`` = exp₀(e_v) and ``haa[v]``, both ``(n, dim)`` float32 inside the ball."""

    points: npt.NDArray[np.float32]
    haa: npt.NDArray[np.float32]


def neighbour_adjacency(graph: CSRGraph, *, weighted: bool = False) -> sp.csr_matrix:
    """The symmetric adjacency without self-loops: 0/1, or ``w(u→v) + w(v→u)`` with ``weighted``."""
    n = graph.num_nodes
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(graph.indptr))
    cols = graph.indices.astype(np.int64)
    keep = rows != cols
    if weighted:
        keep &= graph.weights > 0.0
    data = graph.weights[keep] if weighted else np.ones(int(keep.sum()))
    a = sp.csr_matrix((data, (rows[keep], cols[keep])), shape=(n, n))
    sym = (a + a.T).tocsr()
    if not weighted:
        sym.data[:] = 1.0
    sym.sort_indices()
    return sym


def compute_embeddings(
    graph: CSRGraph,
    params: EmbeddingParams,
    cancel: threading.Event | None = None,
    stage: Stage | None = None,
    *,
    node_ids: Sequence[str] | None = None,
) -> NodeEmbeddings:
    """Node vectors, their Poincaré points and HAA for ``graph`` (see the module docstring).

    With ``node_ids`` (``node_ids[i]`` names node ``i``) the nodes are processed in the sorted order of
    their ids and the rows returned in graph order, so the result depends on the graph only, not on the
    order in which its nodes arrived (a replay stores the same vectors; degenerate eigenspaces would
    otherwise depend on it), and equals ``haa_from_edges`` on the same edges.
    """

    def enter(name: str) -> None:
        if cancel is not None and cancel.is_set():
            raise RecomputeCancelled(f"cancelled before {name}")
        if stage is not None:
            stage(name)

    enter("adjacency")
    n = graph.num_nodes
    order = np.arange(n)
    if node_ids is not None:
        if len(node_ids) != n:
            raise ValueError(f"{len(node_ids)} node ids for {n} nodes")
        order = np.array(sorted(range(n), key=node_ids.__getitem__), dtype=np.int64)
    adjacency = neighbour_adjacency(graph)[order][:, order].tocsr()
    enter(params.method)
    if params.method == "node2vec":
        from wavegraph.processors.graph.node2vec import Node2VecConfig, node2vec_embed

        weighted = neighbour_adjacency(graph, weighted=True)[order][:, order].tocsr()
        config = Node2VecConfig(dim=params.dim, seed=params.seed, workers=1)
        vectors = np.asarray(node2vec_embed(weighted, config=config), dtype=np.float64)
    else:
        vectors = spectral_embedding(adjacency, params.dim, seed=params.seed)
    enter("haa")
    result = haa(adjacency, vectors, k=params.curvature, tau=params.temperature)
    rank = np.empty_like(order)
    rank[order] = np.arange(n)
    return NodeEmbeddings(
        points=_float32_in_ball(result.points[rank], params.curvature),
        haa=_float32_in_ball(result.haa[rank], params.curvature),
    )


def _float32_in_ball(x: npt.NDArray[np.floating], k: float) -> npt.NDArray[np.float32]:
    """Round to float32 and project again (a point just inside the ball may round onto its boundary)."""
    return np.ascontiguousarray(pb.project(np.asarray(x, dtype=np.float32), k=k), dtype=np.float32)
