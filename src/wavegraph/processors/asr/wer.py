"""Word error rate: word-level Levenshtein distance over the reference length, after normalising.

Normalising lower-cases, drops apostrophes (``don't`` → ``dont``) and turns every other character that
is not a letter or digit into a space, so punctuation and casing never count as errors.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = re.compile(r"['’ʼ]")
_NON_WORD = re.compile(r"[^\w]+|_")


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("", text)
    return _NON_WORD.sub(" ", text).split()


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Minimum substitutions + deletions + insertions turning ``reference`` into ``hypothesis``."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[j] + 1,  # deletion
                    current[j - 1] + 1,  # insertion
                    previous[j - 1] + (ref_word != hyp_word),  # substitution or match
                )
            )
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """``edits / len(reference words)``; 0.0 for two empty texts, 1.0 for words against an empty reference."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
