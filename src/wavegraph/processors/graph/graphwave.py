r"""GraphWave: structural node embeddings from heat-kernel wavelets (Donnat et al., KDD 2018).

Written once against an array module ``xp`` and a sparse module: NumPy + SciPy on the CPU, CuPy +
``cupyx.scipy.sparse`` on the GPU (``device="gpu"``). The maths, with :math:`A` the symmetric
weighted adjacency and :math:`D` its degree matrix:

* normalised Laplacian :math:`L = I - D^{-1/2} A D^{-1/2}` (an isolated node gets a zero row);
  its spectrum lies in :math:`[0, 2]`, so :math:`\tilde L = L - I` has its spectrum in :math:`[-1, 1]`;
* heat wavelets at scale :math:`s`: :math:`\Psi_s = e^{-sL} = U\,\mathrm{diag}(e^{-s\lambda})\,U^\top`;
  column :math:`a` is the wavelet centred at node :math:`a`;
* Chebyshev expansion (Jacobi–Anger, :math:`I_k` the modified Bessel functions):
  :math:`e^{-s(x+1)} = \sum_k c_k(s) T_k(x)`, :math:`c_0 = e^{-s} I_0(s)`,
  :math:`c_k = 2(-1)^k e^{-s} I_k(s)`; truncating after degree :math:`K` costs at most
  :math:`\sum_{k>K} |c_k(s)|` in spectral norm, which is how :func:`chebyshev_order` picks :math:`K`;
* three-term recurrence on a block :math:`E` of identity columns:
  :math:`T_0 = E`, :math:`T_1 = \tilde L E`, :math:`T_{k+1} = 2\tilde L T_k - T_{k-1}`;
* embedding: the empirical characteristic function of the coefficients of each wavelet,
  :math:`\phi_a(t) = \frac1N \sum_m e^{i t \Psi_{ma}}`, sampled at :math:`t_1..t_d`, giving
  :math:`\chi_a = [\mathrm{Re}\,\phi_a(t_j), \mathrm{Im}\,\phi_a(t_j)]_{j}` for every scale.

Speed comes from locality: a degree-:math:`K` polynomial in :math:`\tilde L` has no entry beyond
:math:`K` hops, so the recurrence runs on sparse matrices while they stay sparse and the
characteristic function only visits stored entries (every other entry is an exact zero and
contributes :math:`e^{i t 0} = 1`). Once a block fills in past ``dense_threshold`` the recurrence
switches to dense arrays. The result is the same polynomial either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import scipy.special

from wavegraph.errors import MissingPrerequisite
from wavegraph.processors.graph.state import CSRGraph, EdgeList, GraphState

Device = Literal["cpu", "gpu"]

#: Time points of the characteristic function used by the authors' reference code.
DEFAULT_TIME_POINTS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.0, 100.0, 25))


@dataclass(frozen=True)
class ArrayBackend:
    """An array module and its sparse counterpart: (numpy, scipy.sparse) or (cupy, cupyx.scipy.sparse)."""

    name: str
    xp: ModuleType
    sparse: ModuleType

    def to_numpy(self, array: Any) -> np.ndarray:
        """Copy ``array`` to host memory as a NumPy array."""
        if self.name == "cupy":
            return np.asarray(array.get())
        return np.asarray(array)


def array_backend(device: Device = "cpu") -> ArrayBackend:
    """The backend for ``device``; ``"gpu"`` raises :class:`MissingPrerequisite` without CuPy or a GPU."""
    if device == "cpu":
        return ArrayBackend("numpy", np, sp)
    if device != "gpu":
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    try:
        import cupy
        import cupyx.scipy.sparse as cusparse

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise MissingPrerequisite("no CUDA device is visible to CuPy")
    except ImportError as exc:
        raise MissingPrerequisite("GraphWave on the GPU needs CuPy: pip install 'wavegraph[gpu]'") from exc
    except MissingPrerequisite:
        raise
    except Exception as exc:  # a CUDA runtime error: driver missing, no device
        raise MissingPrerequisite(f"CuPy cannot use a GPU here: {exc}") from exc
    return ArrayBackend("cupy", cupy, cusparse)


@dataclass(frozen=True)
class GraphWaveEmbedding:
    """Node embeddings (row i = node i) and the parameters that produced them.

    Columns are grouped by scale; within a scale, the real parts at every time point come first,
    then the imaginary parts (see :attr:`columns`).
    """

    vectors: np.ndarray
    scales: tuple[float, ...]
    time_points: tuple[float, ...]
    order: int

    @property
    def columns(self) -> list[str]:
        """Column names, e.g. ``s0_re_t3``, in the order of :attr:`vectors`."""
        names: list[str] = []
        for si in range(len(self.scales)):
            for part in ("re", "im"):
                names.extend(f"s{si}_{part}_t{ti}" for ti in range(len(self.time_points)))
        return names


def undirected_adjacency(graph: GraphState | CSRGraph | Any) -> sp.csr_matrix:
    r"""The symmetric weighted adjacency :math:`\max(A, A^\top)` (float64 CSR, sorted indices).

    ``graph`` is a :class:`GraphState`, a :class:`CSRGraph` or any square SciPy/dense matrix. Edge
    direction is ignored and an edge listed both ways is not doubled.
    """
    if isinstance(graph, GraphState):
        graph = graph.to_csr()
    elif isinstance(graph, CSRGraph):
        graph = graph.to_scipy()
    a = sp.csr_matrix(graph, dtype=np.float64)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be square, got {a.shape}")
    sym = sp.csr_matrix(a.maximum(a.T))
    sym.sort_indices()
    return sym


def normalized_laplacian(adjacency: Any) -> sp.csr_matrix:
    r""":math:`L = I - D^{-1/2} A D^{-1/2}` as float64 CSR (rows of isolated nodes are zero).

    ``adjacency`` must be square and symmetric with non-negative weights; self-loops are dropped.
    """
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be square, got {a.shape}")
    a.setdiag(0.0)
    a.eliminate_zeros()
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    nz = deg > 0
    inv_sqrt[nz] = 1.0 / np.sqrt(deg[nz])
    scale = sp.diags(inv_sqrt, format="csr")
    ident = sp.diags(nz.astype(np.float64), format="csr")
    lap = sp.csr_matrix(ident - scale @ a @ scale)
    lap.sort_indices()
    return lap


def heat_chebyshev_coefficients(scale: float, order: int) -> np.ndarray:
    r"""Coefficients :math:`c_0..c_K` of :math:`e^{-s(x+1)} = \sum_k c_k T_k(x)` on :math:`[-1, 1]`.

    :math:`c_0 = e^{-s} I_0(s)` and :math:`c_k = 2(-1)^k e^{-s} I_k(s)` (``scipy.special.ive``).
    """
    if scale < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    k = np.arange(order + 1)
    coeffs = 2.0 * (-1.0) ** k * scipy.special.ive(k, scale)
    coeffs[0] /= 2.0
    return np.asarray(coeffs, dtype=np.float64)


def chebyshev_order(scales: Sequence[float], tol: float = 1e-10, max_order: int = 2000) -> int:
    r"""Smallest degree :math:`K` with :math:`\sum_{k>K} |c_k(s)| \le` ``tol`` for every scale.

    The sum bounds the spectral-norm error of the truncated expansion, since
    :math:`|T_k(x)| \le 1` on :math:`[-1, 1]`.
    """
    order = 1
    for s in scales:
        n = min(max_order, int(s + 12.0 * math.sqrt(s + 1.0) + 60.0))
        c = np.abs(heat_chebyshev_coefficients(float(s), n))
        tail = np.cumsum(c[::-1])[::-1]  # tail[k] = sum_{j >= k} |c_j|
        ok = np.nonzero(tail <= tol)[0]
        k = int(ok[0]) - 1 if ok.size else n
        order = max(order, k)
    return min(max(order, 1), max_order)


def spectrum_bounds(adjacency: Any) -> tuple[float, float]:
    r"""(:math:`\lambda_1`, :math:`\lambda_N`): the smallest non-zero eigenvalue of the normalised
    Laplacian on the largest connected component, and the largest eigenvalue of the whole graph."""
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    _, labels = sp.csgraph.connected_components(a, directed=False)
    biggest = np.argmax(np.bincount(labels))
    keep = np.nonzero(labels == biggest)[0]
    lap_cc = normalized_laplacian(a[keep][:, keep])
    lap = normalized_laplacian(a)
    n = lap_cc.shape[0]
    if n < 2:
        raise ValueError("the graph has no edge: GraphWave scales are undefined")
    if lap.shape[0] <= 1500:
        lam_n = float(np.linalg.eigvalsh(lap.toarray())[-1])
    else:
        lam_n = float(spla.eigsh(lap, k=1, which="LA", return_eigenvectors=False)[0])
    if n <= 1500:
        lam_1 = float(np.linalg.eigvalsh(lap_cc.toarray())[1])
    else:
        vals = spla.eigsh(lap_cc, k=2, sigma=-1e-3, which="LM", return_eigenvectors=False)
        lam_1 = float(np.sort(vals)[1])
    return max(lam_1, 1e-12), lam_n


def auto_scales(adjacency: Any, n_scales: int = 2, eta: float = 0.85, gamma: float = 0.95) -> np.ndarray:
    r"""Scales chosen from the spectrum as in Donnat et al. (2018):
    :math:`s_{max} = -\log\eta / \sqrt{\lambda_1\lambda_N}`,
    :math:`s_{min} = -\log\gamma / \sqrt{\lambda_1\lambda_N}`, then ``n_scales`` evenly spaced
    values between them (:math:`\lambda_1`, :math:`\lambda_N` from :func:`spectrum_bounds`)."""
    if not 0 < eta < gamma < 1:
        raise ValueError("need 0 < eta < gamma < 1")
    lam_1, lam_n = spectrum_bounds(adjacency)
    geo = math.sqrt(lam_1 * lam_n)
    s_min, s_max = -math.log(gamma) / geo, -math.log(eta) / geo
    return np.linspace(s_min, s_max, n_scales) if n_scales > 1 else np.array([s_max])


def heat_wavelets_exact(adjacency: Any, scales: Sequence[float]) -> np.ndarray:
    r""":math:`\Psi_s = U\,\mathrm{diag}(e^{-s\lambda})\,U^\top` from a dense eigendecomposition,
    shape ``(n_scales, N, N)``: the reference for small graphs."""
    lam, u = np.linalg.eigh(normalized_laplacian(adjacency).toarray())
    return np.stack([(u * np.exp(-s * lam)) @ u.T for s in scales])


def heat_wavelets(
    adjacency: Any,
    scales: Sequence[float],
    *,
    order: int | None = None,
    tol: float = 1e-10,
    device: Device = "cpu",
) -> np.ndarray:
    r"""Dense :math:`\Psi_s` by the Chebyshev recurrence, shape ``(n_scales, N, N)`` (small graphs)."""
    backend = array_backend(device)
    lap_t = _shifted_laplacian(adjacency, backend)
    k = order if order is not None else chebyshev_order(scales, tol)
    coeffs = np.stack([heat_chebyshev_coefficients(float(s), k) for s in scales])
    n = lap_t.shape[0]
    blocks = _chebyshev_block(lap_t, np.arange(n), coeffs, backend, dense_threshold=0.0)
    return np.stack([_to_dense_numpy(b, backend) for b in blocks])


def characteristic_embedding(wavelets: np.ndarray, time_points: Sequence[float]) -> np.ndarray:
    r""":math:`\chi_a` from dense wavelets ``(n_scales, N, N)``: per scale, the real parts of
    :math:`\phi_a(t) = \frac1N\sum_m e^{it\Psi_{ma}}` at every ``t``, then the imaginary parts."""
    backend = array_backend("cpu")
    t = np.asarray(time_points, dtype=np.float64)
    parts = [_charfun_block(w, t, w.shape[0], backend) for w in wavelets]
    return np.concatenate(parts, axis=1)


def graphwave(
    adjacency: Any,
    *,
    scales: Sequence[float] | None = None,
    n_scales: int = 2,
    time_points: Sequence[float] | None = None,
    order: int | None = None,
    tol: float = 1e-10,
    device: Device = "cpu",
    batch_size: int | None = None,
    dense_threshold: float = 0.25,
    progress: Callable[[int, int], None] | None = None,
) -> GraphWaveEmbedding:
    r"""GraphWave embeddings of every node: ``2 * len(scales) * len(time_points)`` columns.

    Parameters
    ----------
    adjacency:
        Symmetric (weighted) adjacency, any SciPy sparse or dense 2-D array.
    scales:
        Heat scales :math:`s`; default :func:`auto_scales` with ``n_scales`` values.
    time_points:
        Where :math:`\phi_a(t)` is sampled; default ``linspace(0, 100, 25)``.
    order:
        Chebyshev degree :math:`K`; default the smallest with truncation error ≤ ``tol``.
    device:
        ``"cpu"`` (NumPy/SciPy) or ``"gpu"`` (CuPy); same code path.
    batch_size:
        Wavelets computed per block of source nodes (memory ~ ``N * batch_size`` per scale).
    dense_threshold:
        Fill ratio of a block above which the recurrence switches from sparse to dense arrays.
    progress:
        Called as ``progress(done_nodes, total_nodes)`` after each block.
    """
    backend = array_backend(device)
    s = tuple(float(x) for x in (scales if scales is not None else auto_scales(adjacency, n_scales)))
    t = tuple(float(x) for x in (time_points if time_points is not None else DEFAULT_TIME_POINTS))
    k = order if order is not None else chebyshev_order(s, tol)
    coeffs = np.stack([heat_chebyshev_coefficients(x, k) for x in s])
    lap_t = _shifted_laplacian(adjacency, backend)
    n = lap_t.shape[0]
    step = batch_size or max(1, min(n, 8_000_000 // max(n, 1)))
    t_xp = backend.xp.asarray(np.asarray(t, dtype=np.float64))
    out = np.empty((n, 2 * len(s) * len(t)), dtype=np.float64)
    for start in range(0, n, step):
        cols = np.arange(start, min(n, start + step))
        blocks = _chebyshev_block(lap_t, cols, coeffs, backend, dense_threshold)
        parts = [_charfun_block(b, t_xp, n, backend) for b in blocks]
        out[cols] = backend.to_numpy(backend.xp.concatenate(parts, axis=1))
        if progress is not None:
            progress(int(cols[-1]) + 1, n)
    return GraphWaveEmbedding(vectors=out, scales=s, time_points=t, order=k)


def graphwave_from_edges(
    edges: EdgeList,
    *,
    scales: Sequence[float] | None = None,
    n_scales: int = 2,
    time_points: Sequence[float] | None = None,
    order: int | None = None,
    tol: float = 1e-10,
    device: Device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str], GraphWaveEmbedding]:
    """GraphWave on an edge list (direction ignored): ``(node ids, embedding)``, rows in id order.

    For ``wavegraph graph graphwave``; write with ``write_node_table(out, ids, {"gw": emb.vectors})``.
    """
    state = GraphState.from_edges(edges.src, edges.dst, edges.weight)
    emb = graphwave(
        undirected_adjacency(state), scales=scales, n_scales=n_scales, time_points=time_points,
        order=order, tol=tol, device=device, progress=progress,
    )  # fmt: skip
    return list(state.node_ids), emb


def graphwave_exact(
    adjacency: Any, scales: Sequence[float], time_points: Sequence[float] | None = None
) -> np.ndarray:
    """The embedding from the exact eigendecomposition (reference for tests and benches)."""
    t = time_points if time_points is not None else DEFAULT_TIME_POINTS
    return characteristic_embedding(heat_wavelets_exact(adjacency, scales), t)


# -- internals -------------------------------------------------------------------------------------


def _shifted_laplacian(adjacency: Any, backend: ArrayBackend) -> Any:
    r""":math:`\tilde L = L - I` on the backend (spectrum in :math:`[-1, 1]`)."""
    lap = normalized_laplacian(adjacency)
    shifted = sp.csr_matrix(lap - sp.identity(lap.shape[0], format="csr"))
    shifted.eliminate_zeros()
    shifted.sort_indices()
    return backend.sparse.csr_matrix(shifted)


def _chebyshev_block(
    lap_t: Any, cols: np.ndarray, coeffs: np.ndarray, backend: ArrayBackend, dense_threshold: float
) -> list[Any]:
    r""":math:`\sum_k c_{s,k} T_k(\tilde L) E` for every scale, ``E`` = identity columns ``cols``.

    Returns one ``(N, len(cols))`` matrix per scale, sparse while the block is sparse, else dense.
    """
    xp, sparse = backend.xp, backend.sparse
    n, b = lap_t.shape[0], len(cols)
    n_scales, n_terms = coeffs.shape
    start, stop = int(cols[0]), int(cols[-1]) + 1
    if stop - start != b:
        raise ValueError("cols must be a contiguous range of node indices")
    indptr = np.concatenate([np.zeros(start), np.arange(b + 1), np.full(n - stop, b)]).astype(np.int32)
    t_prev: Any = sparse.csr_matrix(
        (xp.ones(b, dtype=xp.float64), xp.arange(b, dtype=xp.int32), xp.asarray(indptr)), shape=(n, b)
    )
    dense = dense_threshold <= 0.0
    if dense:
        t_prev = t_prev.toarray()
    acc = [float(coeffs[i, 0]) * t_prev for i in range(n_scales)]
    if n_terms == 1:
        return acc
    t_cur = lap_t @ t_prev
    acc = [acc[i] + float(coeffs[i, 1]) * t_cur for i in range(n_scales)]
    for k in range(2, n_terms):
        t_next = 2.0 * (lap_t @ t_cur) - t_prev
        if not dense and t_next.nnz > dense_threshold * n * b:
            dense = True
            t_next, t_cur = t_next.toarray(), t_cur.toarray()
            acc = [a.toarray() for a in acc]
        for i in range(n_scales):
            if dense:
                acc[i] += float(coeffs[i, k]) * t_next
            else:
                acc[i] = acc[i] + float(coeffs[i, k]) * t_next
        t_prev, t_cur = t_cur, t_next
    return acc


_TAYLOR_TERMS = 19  # powers 0..18: |u| <= 1 leaves a remainder below 1/19! ≈ 8e-18 per entry


def _charfun_block(w: Any, t: Any, n: int, backend: ArrayBackend) -> Any:
    r"""[Re φ(t), Im φ(t)] for each column of ``w`` (``(N, b)``, sparse or dense) → ``(b, 2·len(t))``.

    Entries are split at :math:`|\psi| \le 1/t_{max}`. Small ones (most of a wavelet, and every
    implicit zero) enter through power sums :math:`P_j = \sum_m (t_{max}\psi_m)^j`, :math:`j \le 18`:
    :math:`\sum_m \cos(t\psi_m) = \sum_{j\,even} (-1)^{j/2} (t/t_{max})^j P_j / j!` and
    :math:`\sum_m \sin(t\psi_m) = \sum_{j\,odd} (-1)^{(j-1)/2} (t/t_{max})^j P_j / j!` (Taylor
    remainder below :math:`1/19!` per entry); the few large ones get :math:`\cos`/:math:`\sin` directly.
    """
    xp, sparse = backend.xp, backend.sparse
    t_host = np.asarray(t if isinstance(t, np.ndarray) else backend.to_numpy(t), dtype=np.float64)
    t_max = float(np.abs(t_host).max()) if t_host.size else 0.0
    scale = t_max if t_max > 0 else 1.0
    b = w.shape[1]
    if sparse.issparse(w):
        w = w.tocsc()
        counts = xp.diff(w.indptr)
        # column of every stored entry (cupy.repeat takes no array of repeats)
        seg = xp.searchsorted(w.indptr, xp.arange(int(w.nnz)), side="right") - 1
        u = w.data * scale
        small = xp.abs(u) <= 1.0
        implicit = (n - counts).astype(xp.float64)
        moments = _power_sums_sparse(u[small], seg[small], b, xp)
        large_vals, large_seg = w.data[~small], seg[~small]
    else:
        u = w * scale
        large = xp.abs(u) > 1.0
        implicit = xp.zeros(b, dtype=xp.float64)
        moments = _power_sums_dense(xp.where(large, 0.0, u), xp)
        moments[:, 0] -= large.sum(axis=0)  # zeroed large entries are not small ones
        cols, rows = xp.nonzero(large.T)  # sorted by column
        large_vals, large_seg = w[rows, cols], cols
    moments[:, 0] += implicit
    cos_coef, sin_coef = _taylor_matrices(t_host / scale)
    re = moments @ xp.asarray(cos_coef)
    im = moments @ xp.asarray(sin_coef)
    if int(large_vals.shape[0]):
        n_large = int(large_vals.shape[0])
        indptr = xp.searchsorted(large_seg, xp.arange(b + 1)).astype(xp.int32)
        gather = sparse.csr_matrix(
            (xp.ones(n_large, dtype=xp.float64), xp.arange(n_large, dtype=xp.int32), indptr),
            shape=(b, n_large),
        )
        arg = xp.outer(large_vals, xp.asarray(t_host))
        re = re + gather @ xp.cos(arg)
        im = im + gather @ xp.sin(arg)
    return xp.concatenate([re, im], axis=1) / n


def _power_sums_sparse(u: Any, seg: Any, b: int, xp: ModuleType) -> Any:
    """``P[a, j] = sum of u**j over the entries of column a`` (``seg`` = column of each entry)."""
    out = xp.empty((b, _TAYLOR_TERMS), dtype=xp.float64)
    out[:, 0] = xp.bincount(seg, minlength=b)
    power = u.copy()
    for j in range(1, _TAYLOR_TERMS):
        out[:, j] = xp.bincount(seg, weights=power, minlength=b)
        if j + 1 < _TAYLOR_TERMS:
            power *= u
    return out


def _power_sums_dense(u: Any, xp: ModuleType) -> Any:
    """``P[a, j] = sum_m u[m, a]**j`` for a dense block ``u`` (``P[:, 0]`` = number of rows)."""
    out = xp.empty((u.shape[1], _TAYLOR_TERMS), dtype=xp.float64)
    out[:, 0] = u.shape[0]
    power = u.copy()
    for j in range(1, _TAYLOR_TERMS):
        out[:, j] = power.sum(axis=0)
        if j + 1 < _TAYLOR_TERMS:
            power *= u
    return out


def _taylor_matrices(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``C[j, i]`` such that ``P @ C`` gives the cos and sin sums at ``t_i = x_i * t_max``."""
    j = np.arange(_TAYLOR_TERMS)[:, None]
    base = x[None, :] ** j / np.array([math.factorial(k) for k in range(_TAYLOR_TERMS)], float)[:, None]
    even = (j % 2 == 0).astype(np.float64)
    sign = np.where((j // 2) % 2 == 0, 1.0, -1.0)
    return base * sign * even, base * sign * (1.0 - even)


def _to_dense_numpy(block: Any, backend: ArrayBackend) -> np.ndarray:
    if backend.sparse.issparse(block):
        block = block.toarray()
    return backend.to_numpy(block)
