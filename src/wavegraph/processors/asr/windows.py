"""Assemble each stream's audio chunks, in sequence order, into windows of up to ``window_s`` seconds.

whisper.cpp pads every call to a 30 s window, so transcribing 2 s chunks one by one costs ~15× more
than transcribing them together. This module is pure (no I/O, no threads; time comes from an injected
clock): the processor feeds it decoded chunks and transcribes the windows it returns.

Rules, per stream:

* **Order.** Sequence numbers start at ``first_seq`` (0) unless :meth:`WindowAssembler.resume` says
  otherwise. A chunk ahead of the next expected number is parked until the missing ones arrive.
* **Duplicates.** A number already taken (or parked) is ignored, as is anything after the end marker.
* **Gaps.** A missing number is waited for until the stream is idle for ``idle_flush_s`` (or more
  than ``max_parked`` chunks are parked). Then it is skipped: the audio before the gap is flushed as
  its own window (reason ``"gap"``) so no window splices across it, and the next window lists the
  skipped numbers in ``gap_before``. Its start time is the chunk's ``start_s`` when the producer sent
  one, otherwise an estimate (the missing chunks are assumed to last as long as the stream's average).
* **Full.** Once ``window_s`` of audio is buffered, a window is cut at the quietest 100 ms of its last
  ``cut_search_s`` seconds (so a word is rarely cut in half); the rest starts the next window.
* **End.** The chunk marked ``end_of_stream`` closes the stream once every number before it arrived
  (or, if some never do, at the idle timeout): the last window has ``final=True``.
* **Idle.** :meth:`WindowAssembler.poll` flushes streams that got nothing for ``idle_flush_s``.
* **Too long.** A chunk that would take its stream past ``max_stream_s`` raises
  :class:`~wavegraph.errors.InvalidEvent` and is not taken (the processor dead-letters it).

Times are absolute seconds in the stream: a window's ``start_s`` is the time of its first sample.
Chunks may carry an opaque ``ref`` (a Kafka offset, say): a window lists the refs of the chunks whose
audio it completes, and :meth:`WindowAssembler.pending_refs` those still held, so a processor knows what
it may commit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from wavegraph.errors import InvalidEvent
from wavegraph.settings import AsrSettings

FlushReason = Literal["full", "end", "idle", "gap", "drain"]

_CUT_FRAME_S = 0.1
_CUT_HOP_S = 0.01


@dataclass(frozen=True)
class Window:
    stream_id: str
    start_s: float
    samples: np.ndarray
    first_seq: int
    last_seq: int
    reason: FlushReason
    final: bool = False
    gap_before: tuple[int, ...] = ()
    refs: tuple[Hashable, ...] = ()
    sample_rate: int = 16_000

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class _Piece:
    seq: int
    samples: np.ndarray
    ref: Hashable | None


@dataclass
class _Parked:
    samples: np.ndarray
    start_s: float | None
    ref: Hashable | None


@dataclass
class _Stream:
    next_seq: int
    cursor_s: float
    """Absolute time just after the last sample taken in order."""
    last_activity: float
    pieces: list[_Piece] = field(default_factory=list)
    buffered: int = 0
    start_s: float = 0.0
    gap_before: tuple[int, ...] = ()
    parked: dict[int, _Parked] = field(default_factory=dict)
    end_seq: int | None = None
    taken_samples: int = 0
    taken_chunks: int = 0
    received_samples: int = 0


@dataclass
class AssemblerStats:
    chunks: int = 0
    duplicates: int = 0
    after_end: int = 0
    gaps: int = 0
    windows: int = 0


class WindowAssembler:
    """Per-stream reordering buffer that emits windows; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        window_s: float = 30.0,
        idle_flush_s: float = 2.0,
        sample_rate: int = 16_000,
        cut_search_s: float = 3.0,
        max_parked: int = 64,
        first_seq: int = 0,
        max_closed: int = 10_000,
        max_stream_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or idle_flush_s <= 0:
            raise ValueError("window_s and idle_flush_s must be positive")
        self.window_samples = round(window_s * sample_rate)
        self.idle_flush_s = idle_flush_s
        self.sample_rate = sample_rate
        self.cut_search = min(int(cut_search_s * sample_rate), self.window_samples // 2)
        self.max_parked = max_parked
        self.first_seq = first_seq
        self.max_stream_samples = None if max_stream_s is None else int(max_stream_s * sample_rate)
        self.clock = clock
        self.stats = AssemblerStats()
        self._streams: dict[str, _Stream] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._max_closed = max_closed

    @classmethod
    def from_settings(
        cls, asr: AsrSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> WindowAssembler:
        return cls(
            window_s=asr.window_s, idle_flush_s=asr.idle_flush_s, max_stream_s=asr.max_stream_s, clock=clock
        )

    # --- feeding -----------------------------------------------------------------------------
    def resume(self, stream_id: str, next_seq: int, start_s: float) -> None:
        """Declare that ``stream_id`` continues at ``next_seq`` whose audio starts at ``start_s``.

        For a processor restarting mid-stream; only affects a stream the assembler holds nothing for.
        """
        state = self._streams.get(stream_id)
        if state is None or (not state.pieces and not state.parked):
            self._closed.pop(stream_id, None)
            self._streams[stream_id] = _Stream(
                next_seq=next_seq, cursor_s=start_s, last_activity=self.clock()
            )

    def add(
        self,
        stream_id: str,
        seq: int,
        samples: np.ndarray,
        *,
        end_of_stream: bool = False,
        start_s: float | None = None,
        ref: Hashable | None = None,
    ) -> list[Window]:
        """Take one chunk (mono float32 at ``sample_rate``); returns the windows it completes."""
        self.stats.chunks += 1
        if stream_id in self._closed:
            self.stats.after_end += 1
            return []
        now = self.clock()
        state = self._streams.get(stream_id)
        if state is None:
            state = _Stream(next_seq=self.first_seq, cursor_s=0.0, last_activity=now)
            self._streams[stream_id] = state
        state.last_activity = now
        if seq < state.next_seq or seq in state.parked:
            self.stats.duplicates += 1
            return []
        if state.end_seq is not None and seq > state.end_seq:
            self.stats.after_end += 1
            return []
        chunk = np.asarray(samples, dtype=np.float32)
        limit = self.max_stream_samples
        if limit is not None and state.received_samples + chunk.size > limit:
            raise InvalidEvent(
                f"audio: stream {stream_id} would exceed the limit of {limit / self.sample_rate:g} s "
                f"at seq {seq}"
            )
        state.received_samples += chunk.size
        if end_of_stream:
            state.end_seq = seq
        state.parked[seq] = _Parked(chunk, start_s, ref)
        out = self._take_in_order(stream_id, state)
        if len(state.parked) > self.max_parked:
            out += self._skip_gaps(stream_id, state)
        out += self._close_if_ended(stream_id, state)
        return out

    def poll(self) -> list[Window]:
        """Flush every stream idle for ``idle_flush_s``: skip its gaps, emit what it holds."""
        now = self.clock()
        out: list[Window] = []
        for stream_id, state in list(self._streams.items()):
            if now - state.last_activity < self.idle_flush_s:
                continue
            if state.parked:
                out += self._skip_gaps(stream_id, state)
            out += self._close_if_ended(stream_id, state)
            if stream_id in self._streams and state.pieces:
                out += self._emit(stream_id, state, state.buffered, "idle")
        return out

    def next_deadline(self) -> float | None:
        """Clock time at which :meth:`poll` will next have something to flush (None: nothing held)."""
        times = [s.last_activity + self.idle_flush_s for s in self._streams.values() if s.pieces or s.parked]
        return min(times) if times else None

    def drain(self) -> list[Window]:
        """Flush everything held, gaps skipped (for shutdown or a revoked partition)."""
        out: list[Window] = []
        for stream_id in list(self._streams):
            out += self.drain_stream(stream_id)
        return out

    def drain_stream(self, stream_id: str) -> list[Window]:
        state = self._streams.get(stream_id)
        if state is None:
            return []
        out = self._skip_gaps(stream_id, state)
        out += self._close_if_ended(stream_id, state)
        if stream_id in self._streams and state.pieces:
            out += self._emit(stream_id, state, state.buffered, "drain")
        return out

    def pending_refs(self) -> list[Hashable]:
        """Refs of chunks held (buffered or parked) and not yet part of an emitted window."""
        refs: list[Hashable] = []
        for state in self._streams.values():
            refs += [p.ref for p in state.pieces if p.ref is not None]
            refs += [p.ref for p in state.parked.values() if p.ref is not None]
        return refs

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # --- internals ---------------------------------------------------------------------------
    def _take_in_order(self, stream_id: str, state: _Stream) -> list[Window]:
        out: list[Window] = []
        while state.next_seq in state.parked:
            seq = state.next_seq
            chunk = state.parked.pop(seq)
            if not state.pieces:
                state.start_s = chunk.start_s if chunk.start_s is not None else state.cursor_s
                state.cursor_s = state.start_s
            if chunk.samples.size or chunk.ref is not None:
                state.pieces.append(_Piece(seq, chunk.samples, chunk.ref))
                state.buffered += chunk.samples.size
            state.cursor_s += chunk.samples.size / self.sample_rate
            state.taken_samples += chunk.samples.size
            state.taken_chunks += 1
            state.next_seq = seq + 1
            while state.buffered >= self.window_samples:
                out += self._emit(stream_id, state, self._cut_point(state), "full")
        return out

    def _skip_gaps(self, stream_id: str, state: _Stream) -> list[Window]:
        out: list[Window] = []
        while state.parked:
            nxt = min(state.parked)
            missing = tuple(range(state.next_seq, nxt))
            if state.pieces:
                out += self._emit(stream_id, state, state.buffered, "gap")
            self.stats.gaps += 1
            chunk = state.parked[nxt]
            if chunk.start_s is None:
                average = (
                    state.taken_samples / state.taken_chunks if state.taken_chunks else chunk.samples.size
                )
                state.cursor_s += len(missing) * average / self.sample_rate
            state.next_seq = nxt
            state.gap_before = missing
            out += self._take_in_order(stream_id, state)
        return out

    def _close_if_ended(self, stream_id: str, state: _Stream) -> list[Window]:
        if state.end_seq is None or state.next_seq <= state.end_seq:
            return []
        out = self._emit(stream_id, state, state.buffered, "end", final=True)
        del self._streams[stream_id]
        self._closed[stream_id] = None
        while len(self._closed) > self._max_closed:
            self._closed.popitem(last=False)
        return out

    def _cut_point(self, state: _Stream) -> int:
        """Index of the quietest 100 ms centre in the last ``cut_search`` samples of a full window."""
        end = self.window_samples
        begin = end - self.cut_search
        tail = self._slice(state, begin, end).astype(np.float64)
        frame = max(1, int(_CUT_FRAME_S * self.sample_rate))
        hop = max(1, int(_CUT_HOP_S * self.sample_rate))
        if tail.size < frame:
            return end
        power = np.concatenate(([0.0], np.cumsum(tail * tail)))
        energy = (power[frame:] - power[:-frame])[::hop]  # sum of squares of each 100 ms frame
        best = int(np.argmin(energy[::-1]))  # ties go to the latest frame: longer windows
        start = (len(energy) - 1 - best) * hop
        return begin + start + frame // 2

    @staticmethod
    def _slice(state: _Stream, begin: int, end: int) -> np.ndarray:
        """Samples ``begin:end`` of the buffered audio, gathered across pieces."""
        parts: list[np.ndarray] = []
        pos = 0
        for piece in state.pieces:
            lo, hi = max(begin - pos, 0), min(end - pos, piece.samples.size)
            if lo < hi:
                parts.append(piece.samples[lo:hi])
            pos += piece.samples.size
            if pos >= end:
                break
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _emit(
        self, stream_id: str, state: _Stream, cut: int, reason: FlushReason, *, final: bool = False
    ) -> list[Window]:
        taken: list[np.ndarray] = []
        refs: list[Hashable] = []
        first = last = state.pieces[0].seq if state.pieces else state.next_seq - 1
        remaining = cut
        while state.pieces and remaining > 0:
            piece = state.pieces[0]
            last = piece.seq
            if piece.samples.size <= remaining:
                taken.append(piece.samples)
                remaining -= piece.samples.size
                state.pieces.pop(0)
                if piece.ref is not None:
                    refs.append(piece.ref)
            else:
                taken.append(piece.samples[:remaining])
                piece.samples = piece.samples[remaining:]
                remaining = 0
        while state.pieces and state.pieces[0].samples.size == 0:  # markers that carry only a ref
            piece = state.pieces.pop(0)
            if piece.ref is not None:
                refs.append(piece.ref)
        samples = np.concatenate(taken) if taken else np.zeros(0, np.float32)
        state.buffered -= samples.size
        if samples.size == 0 and not final and not refs:
            return []
        window = Window(
            stream_id=stream_id,
            start_s=state.start_s,
            samples=samples,
            first_seq=first,
            last_seq=last,
            reason=reason,
            final=final,
            gap_before=state.gap_before,
            refs=tuple(refs),
            sample_rate=self.sample_rate,
        )
        state.start_s += samples.size / self.sample_rate
        state.gap_before = ()
        self.stats.windows += 1
        return [window]
