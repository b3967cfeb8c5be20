"""The errors of the FAISS index, and the one place that imports faiss."""

from __future__ import annotations

from typing import Any

from wavegraph.errors import MissingPrerequisite, WavegraphError

__all__ = ["IndexCorrupt", "InvalidVector", "load_faiss"]


class InvalidVector(WavegraphError, ValueError):
    """A vector has the wrong shape or dimension, holds NaN or infinity, or is all zeros."""


class IndexCorrupt(WavegraphError):
    """The files in an index directory are missing, inconsistent or from an unknown format version."""


def load_faiss() -> Any:
    """The ``faiss`` module, or :class:`MissingPrerequisite` naming the extra to install."""
    try:
        import faiss
    except ImportError:
        raise MissingPrerequisite("the FAISS index needs faiss: pip install 'wavegraph[graph]'") from None
    return faiss
