"""The vector rounding behind the transcript and FAISS checksums."""

from __future__ import annotations

import numpy as np
import pytest

from wavegraph.processors.replay.checksum import VECTOR_DECIMALS, quantize


def test_noise_below_half_a_step_rounds_away_and_a_real_change_does_not() -> None:
    rng = np.random.default_rng(3)
    v = rng.standard_normal(384).astype(np.float32)
    v /= np.linalg.norm(v)
    v = np.round(v, VECTOR_DECIMALS) + 1e-4  # away from every rounding boundary (0.0005 off)
    assert quantize(v + rng.uniform(-1e-4, 1e-4, 384)) == quantize(v)
    assert quantize(v.astype(np.float16)) == quantize(v), "the FAISS index's float16 rows round the same"
    other = v.copy()
    other[7] += 0.002
    assert quantize(other) != quantize(v)


def test_values_are_plain_integers_and_minus_zero_is_zero() -> None:
    out = quantize(np.array([-0.0001, 0.0004, 0.0006, -0.9996, 1.0]))
    assert out == [0, 0, 1, -1000, 1000] and all(type(x) is int for x in out)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_component_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize(np.array([0.1, bad]))
