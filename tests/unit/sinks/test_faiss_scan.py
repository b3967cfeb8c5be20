"""The exact scan below the HNSW threshold: the k best against a numpy sort, filters, padding, ties."""

from __future__ import annotations

import numpy as np
import pytest

from wavegraph.sinks.faiss.scan import BLAS_BATCH, FloatRows, top_k

pytest.importorskip("numba")
pytest.importorskip("faiss")


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _expected(rows: np.ndarray, queries: np.ndarray, k: int, live: np.ndarray) -> np.ndarray:
    """Labels of the k best by a stable sort of float64 scores (equal scores: lower row first), -1 pads."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    scores = queries.astype(np.float64) @ rows[live].astype(np.float64).T
    for qi, s in enumerate(scores):
        best = live[np.argsort(-s, kind="stable")[:k]]
        out[qi, : len(best)] = best
    return out


@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 8, 9, 513])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_every_row_count_and_k_against_a_sort(n: int, k: int) -> None:
    """Row counts around the kernel's blocks of four (and below k) give numpy's top k, padded by -1."""
    rows, queries = _unit(n, 48, n), _unit(6, 48, 100 + n)
    scores, labels = top_k(rows, queries, k)
    np.testing.assert_array_equal(labels, _expected(rows, queries, k, np.arange(n)))
    got = np.where(labels >= 0, scores, 0.0)
    want = np.where(labels >= 0, np.einsum("qd,qkd->qk", queries, rows[np.maximum(labels, 0)]), 0.0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all(scores[labels < 0] == -np.inf)
    assert all(np.all(np.diff(s[lab >= 0]) <= 0) for s, lab in zip(scores, labels, strict=True))


def test_equal_scores_go_by_row_number() -> None:
    base = _unit(5, 32, 1)
    rows = np.repeat(base, 3, axis=0)  # every row three times: rows 3i, 3i+1, 3i+2 are equal
    _, labels = top_k(rows, base[:2], 6)
    assert labels[0, :3].tolist() == [0, 1, 2]
    assert labels[1, :3].tolist() == [3, 4, 5]


def test_a_filter_scans_only_its_live_rows() -> None:
    rows, queries = _unit(1000, 64, 2), _unit(9, 64, 3)
    ids = np.arange(1, 1000, 3, dtype=np.int64)
    alive = np.ones(1000, dtype=np.bool_)
    alive[ids[::4]] = False  # tombstones inside the filter
    alive[::2] = False  # and outside it
    live = ids[alive[ids]]
    _, labels = top_k(rows, queries, 10, ids, alive)
    np.testing.assert_array_equal(labels, _expected(rows, queries, 10, live))
    assert set(labels.ravel().tolist()) <= set(live.tolist())


def test_a_filter_with_no_live_row_pads_everything() -> None:
    rows = _unit(10, 16, 4)
    ids = np.array([2, 5], dtype=np.int64)
    scores, labels = top_k(rows, rows[:2], 3, ids, np.zeros(10, dtype=np.bool_))
    assert (labels == -1).all() and (scores == -np.inf).all()


@pytest.mark.parametrize("n", [3, 700])
def test_a_large_batch_answers_as_the_single_scans(n: int) -> None:
    """From BLAS_BATCH queries on a batch is one BLAS product: the same rows as one scan per query."""
    rows, queries = _unit(n, 40, 5), _unit(BLAS_BATCH + 3, 40, 6)
    scores, labels = top_k(rows, queries, 10)
    singles = [top_k(rows, q[None], 10) for q in queries]
    np.testing.assert_array_equal(labels, np.vstack([lab for _, lab in singles]))
    np.testing.assert_allclose(scores, np.vstack([s for s, _ in singles]), atol=1e-5)


def test_float_rows_grow_to_their_limit_then_as_needed() -> None:
    rows = FloatRows(8, 40, limit=100)
    rows.extend(_unit(3, 8, 7))
    rows.extend(_unit(60, 8, 8))
    assert len(rows.view) == 63 and rows.nbytes == 80 * 8 * 4  # doubled
    rows.extend(_unit(30, 8, 10))
    assert len(rows.view) == 93 and rows.nbytes == 100 * 8 * 4  # doubled, capped at the limit
    rows.extend(_unit(50, 8, 9))
    assert len(rows.view) == 143 and rows.buf.shape[0] == 143  # past the limit: only what is needed
    np.testing.assert_array_equal(rows.view[93:], _unit(50, 8, 9))
