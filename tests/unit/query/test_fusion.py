"""Reciprocal rank fusion: the formula, ties, duplicates and edge cases."""

from __future__ import annotations

import pytest

from wavegraph.query.fusion import RRF_K, reciprocal_rank_fusion


def test_scores_follow_the_formula() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "d"]])
    scores = {f.key: f.score for f in fused}
    assert scores["c"] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert scores["a"] == pytest.approx(1 / (RRF_K + 1))
    assert scores["d"] == pytest.approx(1 / (RRF_K + 2))
    assert [f.key for f in fused] == ["c", "a", "b", "d"]
    assert fused[0].ranks == (3, 1) and fused[0].best_list == 1


def test_found_by_both_beats_found_by_one_at_the_same_rank() -> None:
    fused = reciprocal_rank_fusion([["x", "both"], ["y", "both"]])
    assert fused[0].key == "both"


def test_ties_go_to_the_better_rank_then_the_earlier_list() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["c", "d"]])
    assert [f.key for f in fused] == ["a", "c", "b", "d"]


def test_repeats_count_once_at_their_first_rank_and_empty_lists_are_fine() -> None:
    fused = reciprocal_rank_fusion([["a", "a", "b"], []])
    assert [(f.key, f.ranks) for f in fused] == [("a", (1, None)), ("b", (3, None))]
    assert reciprocal_rank_fusion([]) == []


def test_k_zero_and_negative() -> None:
    assert reciprocal_rank_fusion([["a"]], k=0)[0].score == 1.0
    with pytest.raises(ValueError, match="k must be >= 0"):
        reciprocal_rank_fusion([["a"]], k=-1)
