"""The FAISS hybrid index, re-exported from :mod:`wavegraph.sinks.faiss` (its home since issue 16)."""

from __future__ import annotations

from wavegraph.sinks.faiss import (
    EXACT_WORK,
    FORMAT_VERSION,
    Hit,
    HybridIndex,
    HybridParams,
    IndexCorrupt,
    InvalidVector,
    Row,
)

__all__ = [
    "EXACT_WORK",
    "FORMAT_VERSION",
    "Hit",
    "HybridIndex",
    "HybridParams",
    "IndexCorrupt",
    "InvalidVector",
    "Row",
]
