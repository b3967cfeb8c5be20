"""Stream positions: resuming after any stored window re-assembles exactly the windows that followed it."""

from __future__ import annotations

import numpy as np
import pytest

from wavegraph.processors.asr.windows import Window, WindowAssembler
from wavegraph.processors.audio.cursor import ChunkRef, StreamPosition, advance

RATE = 16_000


def speechy(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Noise whose loudness changes every 0.3 s, so the quietest cut point moves around."""
    n = int(seconds * RATE)
    envelope = np.repeat(rng.uniform(0.01, 0.5, size=n // 4800 + 1), 4800)[:n]
    return (rng.standard_normal(n) * envelope).astype(np.float32)


def chunk_lengths(rng: np.random.Generator) -> list[float]:
    lengths = list(rng.uniform(0.3, 6.0, size=14))
    lengths.insert(5, 47.0)  # longer than a window: cut inside one chunk, twice
    return lengths


def feed(
    assembler: WindowAssembler, chunks: list[np.ndarray], position: StreamPosition | None = None
) -> list[tuple[Window, StreamPosition]]:
    """Feed every chunk (a full replay), cutting the resumed chunk; the windows with their positions."""
    pos = position or StreamPosition()
    if position is not None:
        assembler.resume("s", pos.next_seq, pos.start_s)
    out: list[tuple[Window, StreamPosition]] = []
    for seq, chunk in enumerate(chunks):
        samples = chunk[pos.skip :] if position is not None and seq == position.next_seq else chunk
        ref = ChunkRef(0, seq, seq, chunk.size)
        for window in assembler.add("s", seq, samples, end_of_stream=seq == len(chunks) - 1, ref=ref):
            counted = window.samples.size > 0
            pos = advance(pos, window, counted=counted)
            if counted:
                out.append((window, pos))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_resume_after_each_window_gives_the_same_windows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chunks = [speechy(rng, s) for s in chunk_lengths(rng)]
    original = feed(WindowAssembler(), chunks)
    assert len(original) >= 3
    assert original[-1][1].final
    for k, (_, position) in enumerate(original[:-1]):
        resumed = feed(WindowAssembler(), chunks, position)
        assert len(resumed) == len(original) - k - 1
        for (want, want_pos), (got, got_pos) in zip(original[k + 1 :], resumed, strict=True):
            assert got.start_s == pytest.approx(want.start_s, abs=1e-9)
            np.testing.assert_array_equal(got.samples, want.samples)
            assert got_pos == want_pos


def test_position_after_a_cut_inside_a_chunk() -> None:
    rng = np.random.default_rng(7)
    chunks = [speechy(rng, 10.0), speechy(rng, 25.0), speechy(rng, 4.0)]
    windows = feed(WindowAssembler(), chunks)
    first, pos = windows[0]
    assert first.reason == "full"
    assert pos.next_seq == 1  # the cut fell inside chunk 1
    assert pos.skip == first.samples.size - chunks[0].size
    assert pos.start_s == pytest.approx(first.end_s)
    assert pos.next_window == 1 and not pos.final


def test_position_json_round_trip() -> None:
    pos = StreamPosition(next_seq=4, skip=123, start_s=29.87, next_window=2, final=True)
    assert StreamPosition.from_json(pos.to_json()) == pos
