"""The exact scan of float16 rows: the k best against a numpy sort, filters, padding, ties, exactness."""

from __future__ import annotations

import numpy as np
import pytest

from wavegraph.sinks.faiss.errors import InvalidVector
from wavegraph.sinks.faiss.params import as_unit_matrix
from wavegraph.sinks.faiss.scan import top_k

pytest.importorskip("numba")
pytest.importorskip("faiss")


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rows(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit rows stored as float16, as the row file holds them."""
    return _unit(n, dim, seed).astype(np.float16)


def _expected(rows: np.ndarray, queries: np.ndarray, k: int, live: np.ndarray) -> np.ndarray:
    """Labels of the k best by a stable sort of float64 scores (equal scores: lower row first), -1 pads."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    scores = queries.astype(np.float64) @ rows[live].astype(np.float64).T  # float16 -> float64: exact
    for qi, s in enumerate(scores):
        best = live[np.argsort(-s, kind="stable")[:k]]
        out[qi, : len(best)] = best
    return out


@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 8, 9, 513])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_every_row_count_and_k_against_a_sort(n: int, k: int) -> None:
    """Row counts around the kernel's blocks of four (and below k) give numpy's top k, padded by -1."""
    rows, queries = _rows(n, 48, n), _unit(6, 48, 100 + n)
    scores, labels = top_k(rows, queries, k)
    np.testing.assert_array_equal(labels, _expected(rows, queries, k, np.arange(n)))
    picked = rows[np.maximum(labels, 0)].astype(np.float64)
    want = np.where(labels >= 0, np.einsum("qd,qkd->qk", queries.astype(np.float64), picked), 0.0)
    np.testing.assert_allclose(np.where(labels >= 0, scores, 0.0), want, atol=1e-6)
    assert np.all(scores[labels < 0] == -np.inf)
    assert all(np.all(np.diff(s[lab >= 0]) <= 0) for s, lab in zip(scores, labels, strict=True))


def test_equal_scores_go_by_row_number() -> None:
    base = _rows(5, 32, 1)
    rows = np.repeat(base, 3, axis=0)  # every row three times: rows 3i, 3i+1, 3i+2 are equal
    _, labels = top_k(rows, base[:2].astype(np.float32), 6)
    assert labels[0, :3].tolist() == [0, 1, 2]
    assert labels[1, :3].tolist() == [3, 4, 5]


def test_a_filter_scans_only_its_live_rows() -> None:
    rows, queries = _rows(1000, 64, 2), _unit(9, 64, 3)
    ids = np.arange(1, 1000, 3, dtype=np.int64)
    alive = np.ones(1000, dtype=np.bool_)
    alive[ids[::4]] = False  # tombstones inside the filter
    alive[::2] = False  # and outside it
    live = ids[alive[ids]]
    _, labels = top_k(rows, queries, 10, ids, alive)
    np.testing.assert_array_equal(labels, _expected(rows, queries, 10, live))
    assert set(labels.ravel().tolist()) <= set(live.tolist())


def test_a_filter_with_no_live_row_pads_everything() -> None:
    rows = _rows(10, 16, 4)
    ids = np.array([2, 5], dtype=np.int64)
    scores, labels = top_k(rows, _unit(2, 16, 5), 3, ids, np.zeros(10, dtype=np.bool_))
    assert (labels == -1).all() and (scores == -np.inf).all()


def test_the_float16_conversion_is_exact_for_every_bit_pattern() -> None:
    """Every finite float16 (subnormals, signed zeros, the largest) scores exactly as numpy converts it:
    one-hot queries read single values back."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    finite = bits[np.isfinite(bits.view(np.float16))]
    dim = 64
    rows = np.zeros((len(finite) // dim, dim), dtype=np.uint16)
    rows.ravel()[:] = finite[: rows.size]
    want = rows.view(np.float16).astype(np.float32)
    for j in (0, 17, 63):
        query = np.zeros((1, dim), dtype=np.float32)
        query[0, j] = 1.0
        scores, labels = top_k(rows, query, len(rows))
        got = np.empty(len(rows), dtype=np.float32)
        got[labels[0]] = scores[0]
        np.testing.assert_array_equal(got, want[:, j])


def test_a_batch_answers_as_its_single_queries() -> None:
    rows, queries = _rows(301, 40, 5), _unit(7, 40, 6)
    scores, labels = top_k(rows, queries, 10)
    singles = [top_k(rows, q[None], 10) for q in queries]
    np.testing.assert_array_equal(labels, np.vstack([lab for _, lab in singles]))
    np.testing.assert_array_equal(scores, np.vstack([s for s, _ in singles]))


def test_uint16_bit_patterns_read_as_the_float16_rows() -> None:
    rows, queries = _rows(50, 24, 8), _unit(3, 24, 9)
    np.testing.assert_array_equal(top_k(rows, queries, 5)[1], top_k(rows.view(np.uint16), queries, 5)[1])


@pytest.mark.parametrize("filtered", [False, True], ids=["every-row", "filtered"])
def test_normalise_scales_each_query_as_numpy_does(filtered: bool) -> None:
    rows = _rows(203, 48, 10)
    raw = _unit(6, 48, 11) * np.array([[0.001], [1.0], [37.0], [1e4], [3e-3], [250.0]], dtype=np.float32)
    ids = np.arange(0, 203, 2, dtype=np.int64) if filtered else None
    alive = np.ones(203, dtype=np.bool_) if filtered else None
    want_s, want_l = top_k(rows, as_unit_matrix(raw, 48, "query"), 7, ids, alive)
    got_s, got_l = top_k(rows, np.ascontiguousarray(raw), 7, ids, alive, normalise=True)
    np.testing.assert_array_equal(got_l, want_l)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-6)
    assert not np.allclose(top_k(rows, np.ascontiguousarray(raw), 7, ids, alive)[0], want_s)  # it did scale


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.r_[np.ones(5), np.nan, np.ones(10)], "row 2 holds NaN"),
        (np.zeros(16), "row 2 is all zeros"),
        (np.full(16, 1e30), "row 2 is too large"),
    ],
    ids=["nan", "zeros", "overflow"],
)
@pytest.mark.parametrize("filtered", [False, True], ids=["every-row", "filtered"])
def test_normalise_refuses_a_bad_query_by_its_row(bad: np.ndarray, message: str, filtered: bool) -> None:
    rows, queries = _rows(40, 16, 12), _unit(4, 16, 13)
    queries[2] = bad
    ids = np.arange(40, dtype=np.int64) if filtered else None
    with pytest.raises(InvalidVector, match=message):
        top_k(rows, queries, 3, ids, normalise=True)
