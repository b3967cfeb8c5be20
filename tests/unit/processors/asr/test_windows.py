"""The window assembler: order, duplicates, gaps, full/end/idle flushes, absolute times, bounded memory."""

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
    assert (after.reason, after.first_seq, after.last_seq, after.gap_before) == ("idle", 4, 5, range(3, 4))
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
    assert first.start_s == 0.0 and last.start_s == 7.5 and last.final and last.gap_before == range(1, 2)


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
    assert next(w for w in windows if w.stream_id == "b").gap_before == range(0, 1)
    assert asm.pending_refs() == []


def test_resume_continues_a_stream_mid_way() -> None:
    asm = WindowAssembler(clock=FakeClock())
    asm.resume("s1", next_seq=15, start_s=30.0)
    (w,) = asm.add("s1", 15, ramp(2.0), end_of_stream=True)
    assert (w.start_s, w.first_seq, w.gap_before) == (30.0, 15, range(0))


def test_too_many_parked_chunks_skip_the_gap_at_once() -> None:
    asm = WindowAssembler(max_parked=3, clock=FakeClock())
    out: list[Window] = []
    for seq in range(1, 5):
        out += asm.add("s1", seq, ramp(0.5))
    assert asm.stats.gaps == 1 and out == []  # skipped; audio 1..4 is now buffered in order
    (w,) = asm.drain()
    assert (w.first_seq, w.last_seq, w.gap_before) == (1, 4, range(0, 1))


def test_over_long_stream_is_refused() -> None:
    asm = WindowAssembler.from_settings(AsrSettings(max_stream_s=5.0), clock=FakeClock())
    asm.add("s1", 0, ramp(4.0))
    with pytest.raises(InvalidEvent, match="would exceed the limit of 5 s"):
        asm.add("s1", 1, ramp(2.0))
    assert asm.add("s1", 1, ramp(1.0)) == []


def test_settings_are_used() -> None:
    asm = WindowAssembler.from_settings(AsrSettings(window_s=10.0, idle_flush_s=0.5), clock=FakeClock())
    assert asm.window_samples == 10 * RATE and asm.idle_flush_s == 0.5


# --- bounded memory: gaps, expiry, caps, discarding a group --------------------------------------


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def test_a_huge_sequence_jump_is_a_gap_that_allocates_nothing() -> None:
    clock = FakeClock()
    asm = WindowAssembler(idle_flush_s=2.0, clock=clock)
    jump = 10**18
    asm.add("s1", 0, ramp(2.0))
    asm.add("s1", jump, ramp(2.0), end_of_stream=True)
    clock.now += 2.0
    before, after = asm.poll()
    assert (before.reason, before.last_seq) == ("gap", 0)
    assert after.final and after.first_seq == jump and after.gap_before == range(1, jump)
    assert len(after.gap_before) == jump - 1
    assert after.start_s == pytest.approx(2.0 * jump)  # the missing chunks are assumed 2 s long
    assert asm.open_streams == 0


def test_a_full_window_names_the_chunk_it_cuts() -> None:
    asm = WindowAssembler(window_s=30.0, clock=FakeClock())
    first, second = feed(asm, chunks_of(ramp(40.0)))
    assert first.split_ref is not None and first.split_ref not in first.refs
    assert first.split_ref == second.refs[0] == ("p0", first.last_seq)
    assert second.split_ref is None


def test_a_stream_without_new_audio_expires_and_its_state_is_freed() -> None:
    clock = FakeClock()
    asm = WindowAssembler(idle_flush_s=2.0, stream_expiry_s=10.0, clock=clock)
    parts = chunks_of(ramp(8.0))
    asm.add("s1", 0, parts[0], ref="r0")
    asm.add("s1", 1, parts[1], ref="r1")
    clock.now += 2.0
    (idle,) = asm.poll()
    assert idle.reason == "idle" and asm.open_streams == 1
    assert asm.next_deadline() == pytest.approx(1010.0)  # nothing held: only the expiry is due
    clock.now += 8.0
    assert asm.poll() == []  # nothing held, nothing to flush: only freed
    assert asm.open_streams == 0 and asm.stats.expired == 1 and asm.next_deadline() is None
    assert asm.add("s1", 1, parts[1]) == [] and asm.stats.duplicates == 1  # re-sent: not reopened
    assert asm.open_streams == 0
    asm.add("s1", 2, parts[2], ref="r2")  # new audio reopens it where it stopped
    (w,) = asm.add("s1", 3, parts[3], end_of_stream=True, ref="r3")
    assert (w.first_seq, w.start_s, w.gap_before, w.final) == (2, 4.0, range(0), True)


def test_expiry_flushes_what_a_stream_holds_as_a_window_that_is_not_final() -> None:
    clock = FakeClock()
    asm = WindowAssembler(idle_flush_s=100.0, stream_expiry_s=10.0, clock=clock)
    parts = chunks_of(ramp(8.0))
    for seq in (0, 1, 3):  # 2 never comes
        asm.add("s1", seq, parts[seq], ref=seq)
    assert asm.next_deadline() == pytest.approx(1010.0)
    clock.now += 10.0
    gap, expired = asm.poll()
    assert (gap.reason, gap.refs, gap.final) == ("gap", (0, 1), False)
    assert (expired.reason, expired.refs, expired.final) == ("expired", (3,), False)
    assert expired.gap_before == range(2, 3)
    assert asm.open_streams == 0 and asm.pending_refs() == [] and asm.buffered_s == 0.0


def test_re_sent_chunks_do_not_keep_a_stream_alive() -> None:
    clock = FakeClock()
    asm = WindowAssembler(idle_flush_s=2.0, stream_expiry_s=10.0, clock=clock)
    parts = chunks_of(ramp(4.0))
    asm.add("s1", 0, parts[0], ref=0)
    asm.add("s1", 1, parts[1], ref=1)
    for _ in range(9):  # a producer retrying old chunks every second, and nobody polls
        clock.now += 1.0
        assert asm.add("s1", 0, parts[0]) == [] and asm.add("s1", 1, parts[1]) == []
        assert asm.next_deadline() == pytest.approx(1002.0)  # neither timer moves
    assert asm.stats.duplicates == 18 and clock.now == 1009.0
    assert asm.poll() != [] and asm.open_streams == 1  # idle: flushed, still open
    clock.now += 1.0
    assert asm.poll() == [] and asm.open_streams == 0 and asm.stats.expired == 1


def test_expiry_with_audio_held_flushes_it_once() -> None:
    clock = FakeClock()
    asm = WindowAssembler(idle_flush_s=20.0, stream_expiry_s=10.0, clock=clock)
    asm.add("s1", 0, ramp(2.0), ref=0)
    clock.now += 9.0
    asm.add("s1", 0, ramp(2.0))  # re-sent
    clock.now += 1.0
    (w,) = asm.poll()
    assert (w.reason, w.refs, w.final) == ("expired", (0,), False)
    assert asm.poll() == [] and asm.open_streams == 0


def test_open_stream_cap_refuses_a_new_stream_while_every_stream_holds_audio() -> None:
    clock = FakeClock()
    asm = WindowAssembler(max_open_streams=2, clock=clock)
    asm.add("a", 0, ramp(1.0), ref="a0")
    asm.add("b", 0, ramp(1.0), ref="b0")
    with pytest.raises(InvalidEvent, match=r"^audio: too many open streams: 2 streams hold audio"):
        asm.add("c", 0, ramp(1.0), ref="c0")
    assert asm.open_streams == 2 and asm.stats.refused == 1 and "c0" not in asm.pending_refs()
    (end,) = asm.add("a", 1, silence(0.0), end_of_stream=True, ref="a1")
    assert end.final and end.refs == ("a0", "a1")
    assert asm.add("c", 1, ramp(1.0), ref="c1") == []  # room again: c opens (0 is now a gap)
    assert asm.open_streams == 2 and set(asm.pending_refs()) == {"b0", "c1"}


def test_open_stream_cap_evicts_the_least_recently_active_stream_that_holds_nothing() -> None:
    clock = FakeClock()
    asm = WindowAssembler(idle_flush_s=2.0, max_open_streams=2, clock=clock)
    asm.add("a", 0, ramp(2.0))
    clock.now += 1.0
    asm.add("b", 0, ramp(2.0))
    clock.now += 2.0
    assert len(asm.poll()) == 2  # both idle-flushed: open, holding nothing
    asm.add("c", 0, ramp(1.0))  # evicts a (older), losing nothing
    assert asm.stats.evicted == 1 and asm.open_streams == 2
    assert asm.add("a", 0, ramp(2.0)) == [] and asm.stats.duplicates == 1  # a's tombstone still knows
    asm.add("a", 1, ramp(2.0))  # a continues (evicting b, which holds nothing)
    assert asm.stats.evicted == 2 and not asm.is_open("b")
    (w,) = asm.drain_stream("a")
    assert (w.first_seq, w.start_s, w.gap_before) == (1, 2.0, range(0))


def test_buffered_audio_cap_flushes_the_stream_holding_the_most() -> None:
    asm = WindowAssembler(max_buffered_s=5.0, clock=FakeClock())
    asm.add("a", 0, ramp(2.0), ref="a0")
    asm.add("b", 0, ramp(2.0), ref="b0")
    assert asm.add("b", 2, ramp(1.0), ref="b2") == []  # parked audio counts too: 5 s, not over
    assert asm.buffered_s == pytest.approx(5.0)
    (w,) = asm.add("a", 1, ramp(1.5), ref="a1")  # 6.5 s > 5 s: a holds 3.5 s, b 3 s
    assert (w.stream_id, w.reason, w.refs, w.final) == ("a", "pressure", ("a0", "a1"), False)
    assert w.duration_s == pytest.approx(3.5)
    assert asm.buffered_s == pytest.approx(3.0) and asm.stats.pressure == 1
    assert set(asm.pending_refs()) == {"b0", "b2"} and asm.is_open("a")
    (b_gap, b_rest) = asm.add("a", 2, ramp(2.5), ref="a2")  # 5.5 s: now b holds the most
    assert (b_gap.stream_id, b_gap.reason, b_gap.refs) == ("b", "gap", ("b0",))
    assert (b_rest.reason, b_rest.refs, b_rest.gap_before) == ("pressure", ("b2",), range(1, 2))
    assert asm.buffered_s == pytest.approx(2.5) and asm.pending_refs() == ["a2"]


def test_discard_forgets_a_group_open_and_closed_and_nothing_else() -> None:
    asm = WindowAssembler(clock=FakeClock())
    asm.add("ended", 0, ramp(1.0), end_of_stream=True, group="p0")
    asm.add("open", 0, ramp(1.0), ref="o0", group="p0")
    asm.add("other", 0, ramp(1.0), ref="x0", group="p1")
    assert asm.pending_refs(group="p0") == ["o0"] and asm.pending_refs(group="p1") == ["x0"]
    asm.discard("p0")
    assert asm.pending_refs() == ["x0"] and asm.open_streams == 1 and asm.buffered_s == pytest.approx(1.0)
    (again,) = asm.add("ended", 0, ramp(1.0), end_of_stream=True, group="p0")  # no tombstone left
    assert again.final and asm.stats.after_end == 0


def test_resume_does_not_open_a_stream_nor_override_one_holding_audio() -> None:
    asm = WindowAssembler(max_open_streams=1, clock=FakeClock())
    asm.add("a", 0, ramp(1.0), ref="a0")
    asm.resume("a", next_seq=9, start_s=50.0)  # holds audio: ignored
    asm.resume("b", next_seq=3, start_s=6.0)
    assert asm.open_streams == 1 and not asm.is_open("b")
    with pytest.raises(InvalidEvent, match="too many open streams"):
        asm.add("b", 3, ramp(1.0))
    (w,) = asm.add("a", 1, silence(0.0), end_of_stream=True)
    assert w.refs == ("a0",) and w.first_seq == 0
    (b,) = asm.add("b", 3, ramp(1.0), end_of_stream=True)
    assert (b.first_seq, b.start_s) == (3, 6.0)


def test_bounded_memory_settings_are_used() -> None:
    asr = AsrSettings(max_open_streams=7, max_buffered_s=60.0, stream_expiry_s=30.0)
    asm = WindowAssembler.from_settings(asr, clock=FakeClock())
    assert (asm.max_open_streams, asm.max_buffered_samples, asm.stream_expiry_s) == (7, 60 * RATE, 30.0)
