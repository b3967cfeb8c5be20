"""Vector checks shared by the vector stores and the search API, and the one error they raise.

A vector is usable for cosine search when it has the configured dimension, only finite values and a
non-zero norm (a zero vector has no direction: pgvector's ``<=>`` returns NaN for it and FAISS ranks it
arbitrarily). Everything is checked after the cast to float32, so a float64 value too large for float32
is reported as infinite rather than stored as ``inf``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# One class for the whole process: the FAISS index raises the same one. It is a WavegraphError and a
# ValueError (the HTTP side answers it with 422). Its natural home is wavegraph.errors.
from wavegraph.sinks.faiss import InvalidVector

__all__ = ["InvalidVector", "check_matrix", "check_vector"]


def check_vector(vector: Any, dim: int, what: str = "query vector") -> np.ndarray:
    """``vector`` as a C-contiguous float32 ``(dim,)`` array, or :class:`InvalidVector` naming the problem."""
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused below
            arr = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidVector(f"{what} is not an array of numbers: {exc}") from None
    if arr.ndim != 1:
        raise InvalidVector(f"{what} must be one vector of {dim} numbers, got an array of shape {arr.shape}")
    if arr.shape[0] != dim:
        raise InvalidVector(f"{what} has dimension {arr.shape[0]}, expected {dim}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidVector(
            f"{what} has {bad.size} NaN or infinite value(s) (first at index {int(bad[0])}: {arr[bad[0]]})"
        )
    if not arr.any():
        raise InvalidVector(f"{what} is all zeros: cosine distance is undefined for it")
    return np.ascontiguousarray(arr)


def check_matrix(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` array; the same checks as :func:`check_vector`
    row by row, the error naming the first bad row."""
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused below
            arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidVector(f"{what} are not an array of numbers: {exc}") from None
    if arr.ndim != 2:
        raise InvalidVector(f"{what} must be a 2-D array (n, {dim}), got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise InvalidVector(f"{what} have dimension {arr.shape[1]}, expected {dim}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InvalidVector(f"{what}: row {row} has NaN or infinite values")
    zero = ~arr.any(axis=1)
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise InvalidVector(f"{what}: row {row} is all zeros: cosine distance is undefined for it")
    return np.ascontiguousarray(arr)
