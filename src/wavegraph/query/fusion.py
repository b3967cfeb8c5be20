"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009) of ranked lists of keys.

``score(d) = sum over lists L containing d of 1 / (k + rank_L(d))``, ranks from 1, ``k = 60`` (the
paper's constant). Only ranks matter, so lists whose scores live on different scales (BM25-like sums,
cosine similarities) fuse without calibration. A key missing from a list adds nothing for it. Ties are
broken by the best single rank, then by the earlier list, so the order is deterministic.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["RRF_K", "Fused", "reciprocal_rank_fusion"]

RRF_K = 60

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Fused(Generic[K]):
    """A fused key: its RRF ``score`` and its 1-based rank in each list (``None`` where absent)."""

    key: K
    score: float
    ranks: tuple[int | None, ...]

    @property
    def best_list(self) -> int:
        """The index of the list that ranked this key best (the earlier list on a tie)."""
        present = [(r, i) for i, r in enumerate(self.ranks) if r is not None]
        return min(present)[1]


def reciprocal_rank_fusion(lists: Sequence[Sequence[K]], k: int = RRF_K) -> list[Fused[K]]:
    """Fuse ranked ``lists`` (best first; a key repeated within a list counts at its first rank).

    Returns every key of every list, best fused score first. ``k`` must be >= 0.
    """
    if k < 0:
        raise ValueError(f"the RRF constant k must be >= 0, got {k}")
    ranks: dict[K, list[int | None]] = {}
    for li, ranked in enumerate(lists):
        for pos, key in enumerate(ranked, start=1):
            slot = ranks.setdefault(key, [None] * len(lists))
            if slot[li] is None:
                slot[li] = pos
    fused = [
        Fused(key, sum(1.0 / (k + r) for r in rs if r is not None), tuple(rs)) for key, rs in ranks.items()
    ]

    def order(f: Fused[K]) -> tuple[float, int, int]:
        best = min((r, i) for i, r in enumerate(f.ranks) if r is not None)
        return (-f.score, best[0], best[1])

    fused.sort(key=order)
    return fused
