"""Word error rate on normalised words."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_edit_distance_counts_words_not_letters() -> None:
    assert edit_distance(["kitten"], ["sitting"]) == 1
    assert edit_distance(list("kitten"), list("sitting")) == 3


def _by_definition(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Levenshtein distance straight from its recursive definition (an independent oracle)."""

    @functools.cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


WORDS = st.lists(st.sampled_from(["a", "b", "c", "dont", "ask"]), max_size=8)


@given(WORDS, WORDS)
def test_edit_distance_is_symmetric_and_matches_the_definition(a: list[str], b: list[str]) -> None:
    forward = edit_distance(a, b)
    assert forward == edit_distance(b, a)
    assert forward == _by_definition(tuple(a), tuple(b))
    assert abs(len(a) - len(b)) <= forward <= max(len(a), len(b))
    assert (forward == 0) == (a == b)


@given(WORDS, WORDS, WORDS)
def test_edit_distance_obeys_the_triangle_inequality(a: list[str], b: list[str], c: list[str]) -> None:
    assert edit_distance(a, c) <= edit_distance(a, b) + edit_distance(b, c)


@given(WORDS, WORDS)
def test_wer_is_edits_over_the_reference_length_so_not_symmetric(a: list[str], b: list[str]) -> None:
    ref, hyp = " ".join(a), " ".join(b)
    if a:
        assert wer(ref, hyp) == pytest.approx(_by_definition(tuple(a), tuple(b)) / len(a))
    assert wer("a b c d", "a") == 0.75 and wer("a", "a b c d") == 3.0
