"""Word error rate on normalised words."""

from __future__ import annotations

import pytest

from wavegraph.processors.asr.wer import edit_distance, normalize, wer


def test_normalize_drops_case_and_punctuation() -> None:
    assert normalize("And so, my fellow Americans: don't—ASK!") == [
        "and",
        "so",
        "my",
        "fellow",
        "americans",
        "dont",
        "ask",
    ]


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("a b c d", "a b c d", 0.0),
        ("a b c d", "a x c d", 0.25),  # substitution
        ("a b c d", "a c d", 0.25),  # deletion
        ("a b c d", "a b b c d", 0.25),  # insertion
        ("a b", "", 1.0),
        ("", "", 0.0),
        ("", "words", 1.0),
        ("Hello, World.", "hello world", 0.0),
    ],
)
def test_wer(ref: str, hyp: str, expected: float) -> None:
    assert wer(ref, hyp) == pytest.approx(expected)


def test_edit_distance_is_symmetric_in_cost() -> None:
    assert edit_distance(["kitten"], ["sitting"]) == 1
    assert edit_distance(list("kitten"), list("sitting")) == 3
