"""The window assembler: order, duplicates, gaps, full/end/idle flushes and absolute times."""

from __future__ import annotations

import numpy as np
import pytest

from wavegraph.errors import InvalidEvent
from wavegraph.processors.asr.windows import Window, WindowAssembler
from wavegraph.settings import AsrSettings

RATE = 16_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chunks_of(audio: np.ndarray, seconds: float = 2.0) -> list[np.ndarray]:
    n = int(seconds * RATE)
    return [audio[i : i + n] for i in range(0, len(audio), n)]


def ramp(seconds: float) -> np.ndarray:
    """Distinct, non-silent samples so concatenation errors show up."""
    n = int(seconds * RATE)
    return (0.1 + 0.8 * (np.arange(n) % 997) / 997).astype(np.float32)


def feed(asm: WindowAssembler, parts: list[np.ndarray], order: list[int] | None = None) -> list[Window]:
    out: list[Window] = []
    last = len(parts) - 1
    for seq in order if order is not None else range(len(parts)):
        out += asm.add("s1", seq, parts[seq], end_of_stream=seq == last, ref=("p0", seq))
    return out


def check_contiguous(windows: list[Window], audio: np.ndarray) -> None:
    np.testing.assert_array_equal(np.concatenate([w.samples for w in windows]), audio)
    position = 0.0
    for w in windows:
        assert w.start_s == pytest.approx(position)
        position = w.end_s


def test_in_order_chunks_make_full_windows_then_a_final_one() -> None:
    audio = ramp(70.0)
    asm = WindowAssembler(window_s=30.0, clock=FakeClock())
    windows = feed(asm, chunks_of(audio))
    assert [w.reason for w in windows] == ["full", "full", "end"]
    assert all(w.duration_s <= 30.0 for w in windows) and windows[0].duration_s >= 27.0
    assert windows[-1].final and not windows[0].final
    check_contiguous(windows, audio)
    assert asm.open_streams == 0 and asm.pending_refs() == []
    refs = [r for w in windows for r in w.refs]
    assert refs == [("p0", i) for i in range(35)]


def test_a_full_window_is_cut_in_the_quietest_part_of_its_end() -> None:
    audio = ramp(40.0)
    audio[int(28.2 * RATE) : int(28.5 * RATE)] = 0.0  # a pause 28.2-28.5 s
    windows = feed(WindowAssembler(window_s=30.0, clock=FakeClock()), chunks_of(audio))
    assert 28.2 <= windows[0].end_s <= 28.5
    check_contiguous(windows, audio)


def test_out_of_order_and_duplicate_chunks() -> None:
    audio = ramp(20.0)
    parts = chunks_of(audio)
    asm = WindowAssembler(clock=FakeClock())
    order = [1, 0, 0, 3, 2, 1, 5, 4, 6, 8, 7, 9]
    windows = feed(asm, parts, order)
    assert len(windows) == 1 and windows[0].reason == "end"
    check_contiguous(windows, audio)
    assert asm.stats.duplicates == 2
    assert asm.add("s1", 10, parts[0]) == [] and asm.stats.after_end == 1


def test_a_gap_waits_for_the_idle_timeout_then_is_skipped() -> None:
    clock = FakeClock()
    asm = WindowAssembler(idle_flush_s=2.0, clock=clock)
    parts = chunks_of(ramp(12.0))
    for seq in (0, 1, 2, 4, 5):
        assert asm.add("s1", seq, parts[seq]) == []
    assert asm.next_deadline() == pytest.approx(1002.0)
    clock.now += 1.0
    assert asm.poll() == []
    clock.now += 1.5
    before, after = asm.poll()
    assert (before.reason, before.first_seq, before.last_seq, before.start_s) == ("gap", 0, 2, 0.0)
    assert (after.reason, after.first_seq, after.last_seq, after.gap_before) == ("idle", 4, 5, (3,))
    assert after.start_s == pytest.approx(8.0)  # the missing chunk is assumed to be 2 s long
    assert asm.stats.gaps == 1
    # a late chunk 3 is a duplicate now; the stream goes on from 6
    assert asm.add("s1", 3, parts[3]) == []
    (last,) = asm.add("s1", 6, np.zeros(0, np.float32), end_of_stream=True)
    assert last.final and last.samples.size == 0


def test_producer_times_are_used_after_a_gap() -> None:
    clock = FakeClock()
    asm = WindowAssembler(clock=clock)
    parts = chunks_of(ramp(6.0))
    asm.add("s1", 0, parts[0], start_s=0.0)
    asm.add("s1", 2, parts[2], start_s=7.5, end_of_stream=True)
    clock.now += 3
    first, last = asm.poll()
    assert first.start_s == 0.0 and last.start_s == 7.5 and last.final and last.gap_before == (1,)


def test_idle_flush_without_end_keeps_the_stream_clock() -> None:
    clock = FakeClock()
    asm = WindowAssembler(idle_flush_s=2.0, clock=clock)
    parts = chunks_of(ramp(8.0))
    asm.add("s1", 0, parts[0])
    asm.add("s1", 1, parts[1])
    clock.now += 2.0
    (w1,) = asm.poll()
    assert (w1.reason, w1.start_s, w1.duration_s, w1.final) == ("idle", 0.0, 4.0, False)
    assert asm.poll() == [] and asm.next_deadline() is None
    asm.add("s1", 2, parts[2])
    (w2,) = asm.add("s1", 3, parts[3], end_of_stream=True)
    assert (w2.reason, w2.start_s, w2.duration_s, w2.final) == ("end", 4.0, 4.0, True)


def test_streams_are_independent_and_drain_flushes_everything() -> None:
    asm = WindowAssembler(clock=FakeClock())
    asm.add("a", 0, ramp(1.0), ref="a0")
    asm.add("b", 1, ramp(1.0), ref="b1")  # b's 0 never came
    assert set(asm.pending_refs()) == {"a0", "b1"}
    windows = asm.drain()
    assert sorted((w.stream_id, w.reason) for w in windows) == [("a", "drain"), ("b", "drain")]
    assert next(w for w in windows if w.stream_id == "b").gap_before == (0,)
    assert asm.pending_refs() == []


def test_resume_continues_a_stream_mid_way() -> None:
    asm = WindowAssembler(clock=FakeClock())
    asm.resume("s1", next_seq=15, start_s=30.0)
    (w,) = asm.add("s1", 15, ramp(2.0), end_of_stream=True)
    assert (w.start_s, w.first_seq, w.gap_before) == (30.0, 15, ())


def test_too_many_parked_chunks_skip_the_gap_at_once() -> None:
    asm = WindowAssembler(max_parked=3, clock=FakeClock())
    out: list[Window] = []
    for seq in range(1, 5):
        out += asm.add("s1", seq, ramp(0.5))
    assert asm.stats.gaps == 1 and out == []  # skipped; audio 1..4 is now buffered in order
    (w,) = asm.drain()
    assert (w.first_seq, w.last_seq, w.gap_before) == (1, 4, (0,))


def test_over_long_stream_is_refused() -> None:
    asm = WindowAssembler.from_settings(AsrSettings(max_stream_s=5.0), clock=FakeClock())
    asm.add("s1", 0, ramp(4.0))
    with pytest.raises(InvalidEvent, match="would exceed the limit of 5 s"):
        asm.add("s1", 1, ramp(2.0))
    assert asm.add("s1", 1, ramp(1.0)) == []


def test_settings_are_used() -> None:
    asm = WindowAssembler.from_settings(AsrSettings(window_s=10.0, idle_flush_s=0.5), clock=FakeClock())
    assert asm.window_samples == 10 * RATE and asm.idle_flush_s == 0.5
