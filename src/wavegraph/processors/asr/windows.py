"""Assemble each stream's audio chunks, in sequence order, into windows of up to ``window_s`` seconds.

whisper.cpp pads every call to a 30 s window, so transcribing 2 s chunks one by one costs ~15× more
than transcribing them together. This module is pure (no I/O, no threads; time comes from an injected
clock): the processor feeds it decoded chunks and transcribes the windows it returns.

Rules, per stream:

* **Order.** Sequence numbers start at ``first_seq`` (0) unless :meth:`WindowAssembler.resume` says
  otherwise. A chunk ahead of the next expected number is parked until the missing ones arrive.
* **Duplicates.** A number already taken (or parked) is ignored, as is anything after the end marker.
  Ignored chunks are not *new audio*: they neither reset the idle timer nor keep a stream open.
* **Gaps.** A missing number is waited for until the stream is idle for ``idle_flush_s`` (or more
  than ``max_parked`` chunks are parked). Then it is skipped: the audio before the gap is flushed as
  its own window (reason ``"gap"``) so no window splices across it, and the next window lists the
  skipped numbers in ``gap_before`` (a ``range``: a jump of 10¹⁸ numbers costs nothing). Its start time
  is the chunk's ``start_s`` when the producer sent one, otherwise an estimate (the missing chunks are
  assumed to last as long as the stream's average).
* **Full.** Once ``window_s`` of audio is buffered, a window is cut at the quietest 100 ms of its last
  ``cut_search_s`` seconds (so a word is rarely cut in half); the rest starts the next window, and the
  window names the chunk it cut in ``split_ref``.
* **End.** The chunk marked ``end_of_stream`` closes the stream once every number before it arrived
  (or, if some never do, at the idle timeout): the last window has ``final=True``.
* **Idle.** :meth:`WindowAssembler.poll` flushes streams that got no new audio for ``idle_flush_s``.
* **Too long.** A chunk that would take its stream past ``max_stream_s`` raises
  :class:`~wavegraph.errors.InvalidEvent` and is not taken (the processor dead-letters it).

Bounded memory (all optional; :meth:`WindowAssembler.from_settings` takes them from ``asr.*``):

* **Expiry** (``stream_expiry_s``). :meth:`~WindowAssembler.poll` closes a stream that got no new audio
  for that long: what it holds is flushed (gaps skipped; reason ``"expired"``, ``final=False`` since the
  producer never ended it) and its state is freed. A small tombstone (next number, stream time) stays
  among the ``max_closed`` most recently closed streams, so a re-sent old chunk is still a duplicate and
  a later new chunk reopens the stream where it stopped.
* **Open streams** (``max_open_streams``). A chunk that would open one stream too many first evicts the
  least recently active open stream that holds no audio (it is closed as on expiry, losing nothing);
  when every open stream holds audio, the chunk raises ``InvalidEvent("audio: too many open streams
  ...")`` and is not taken (the processor dead-letters it; the stream's later chunks are taken once a
  stream closes, the refused numbers then being a gap).
* **Buffered audio** (``max_buffered_s``, over all open streams, parked chunks included). A chunk that
  takes the total past the cap is taken; then the streams holding the most audio are flushed at once
  (gaps skipped, reason ``"pressure"``) until the total is back under the cap. Nothing is refused.

Streams may carry a ``group`` (the Kafka partition, say): :meth:`WindowAssembler.discard` forgets a
group's streams, open or closed, without emitting anything (for a revoked partition).

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

FlushReason = Literal["full", "end", "idle", "gap", "drain", "expired", "pressure"]

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
    gap_before: range = range(0)
    """Sequence numbers skipped just before this window."""
    refs: tuple[Hashable, ...] = ()
    """Refs of the chunks whose audio this window completes."""
    sample_rate: int = 16_000
    split_ref: Hashable | None = None
    """Ref of the chunk cut by this window: its head is here, its rest (and its ref) in the next one."""

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


@dataclass(frozen=True)
class _Resume:
    """Where a closed (not ended) stream continues."""

    next_seq: int
    cursor_s: float
    received_samples: int = 0


@dataclass(frozen=True)
class _Closed:
    group: Hashable
    resume: _Resume | None
    """None: the stream ended (anything later is ignored)."""


@dataclass
class _Stream:
    next_seq: int
    cursor_s: float
    """Absolute time just after the last sample taken in order."""
    last_audio: float
    """Clock time of the last new chunk (duplicates do not count)."""
    group: Hashable = None
    pieces: list[_Piece] = field(default_factory=list)
    buffered: int = 0
    start_s: float = 0.0
    gap_before: range = range(0)
    parked: dict[int, _Parked] = field(default_factory=dict)
    parked_samples: int = 0
    end_seq: int | None = None
    taken_samples: int = 0
    taken_chunks: int = 0
    received_samples: int = 0

    @property
    def held(self) -> int:
        return self.buffered + self.parked_samples

    @property
    def empty(self) -> bool:
        return not self.pieces and not self.parked


@dataclass
class AssemblerStats:
    chunks: int = 0
    duplicates: int = 0
    after_end: int = 0
    gaps: int = 0
    windows: int = 0
    expired: int = 0
    evicted: int = 0
    refused: int = 0
    pressure: int = 0


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
        stream_expiry_s: float | None = None,
        max_open_streams: int | None = None,
        max_buffered_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or idle_flush_s <= 0:
            raise ValueError("window_s and idle_flush_s must be positive")
        if stream_expiry_s is not None and stream_expiry_s <= 0:
            raise ValueError("stream_expiry_s must be positive")
        if max_open_streams is not None and max_open_streams < 1:
            raise ValueError("max_open_streams must be at least 1")
        self.window_samples = round(window_s * sample_rate)
        self.idle_flush_s = idle_flush_s
        self.sample_rate = sample_rate
        self.cut_search = min(int(cut_search_s * sample_rate), self.window_samples // 2)
        self.max_parked = max_parked
        self.first_seq = first_seq
        self.max_stream_samples = None if max_stream_s is None else int(max_stream_s * sample_rate)
        self.stream_expiry_s = stream_expiry_s
        self.max_open_streams = max_open_streams
        self.max_buffered_samples = None if max_buffered_s is None else int(max_buffered_s * sample_rate)
        self.clock = clock
        self.stats = AssemblerStats()
        self._streams: dict[str, _Stream] = {}
        self._closed: OrderedDict[str, _Closed] = OrderedDict()
        self._max_closed = max_closed
        self._held = 0

    @classmethod
    def from_settings(
        cls, asr: AsrSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> WindowAssembler:
        return cls(
            window_s=asr.window_s,
            idle_flush_s=asr.idle_flush_s,
            max_stream_s=asr.max_stream_s,
            stream_expiry_s=asr.stream_expiry_s,
            max_open_streams=asr.max_open_streams,
            max_buffered_s=asr.max_buffered_s,
            clock=clock,
        )

    # --- feeding -----------------------------------------------------------------------------
    def resume(self, stream_id: str, next_seq: int, start_s: float, *, group: Hashable = None) -> None:
        """Declare that ``stream_id`` continues at ``next_seq`` whose audio starts at ``start_s``.

        For a processor restarting mid-stream; only affects a stream the assembler holds nothing for.
        The stream is not opened yet (it counts toward ``max_open_streams`` from its first new chunk).
        """
        state = self._streams.get(stream_id)
        if state is not None:
            if not state.empty:
                return
            del self._streams[stream_id]
        self._tombstone(stream_id, group, _Resume(next_seq, start_s))

    def add(
        self,
        stream_id: str,
        seq: int,
        samples: np.ndarray,
        *,
        end_of_stream: bool = False,
        start_s: float | None = None,
        ref: Hashable | None = None,
        group: Hashable = None,
    ) -> list[Window]:
        """Take one chunk (mono float32 at ``sample_rate``); returns the windows it completes.

        The windows may belong to other streams (flushed for the ``max_buffered_s`` cap). Raises
        :class:`InvalidEvent` (the chunk is not taken, nothing else changes) when the stream would
        exceed ``max_stream_s`` or the chunk would open one stream more than ``max_open_streams``.
        """
        self.stats.chunks += 1
        chunk = np.asarray(samples, dtype=np.float32)
        state = self._streams.get(stream_id)
        if state is None:
            closed = self._closed.get(stream_id)
            resume = closed.resume if closed is not None else _Resume(self.first_seq, 0.0)
            if resume is None:  # the stream ended
                self.stats.after_end += 1
                return []
            if seq < resume.next_seq:
                self.stats.duplicates += 1
                return []
            self._check_length(stream_id, seq, resume.received_samples, chunk.size)
            self._make_room(stream_id)
            state = self._open(stream_id, resume, group)
        elif seq < state.next_seq or seq in state.parked:
            self.stats.duplicates += 1
            return []
        elif state.end_seq is not None and seq > state.end_seq:
            self.stats.after_end += 1
            return []
        else:
            self._check_length(stream_id, seq, state.received_samples, chunk.size)
        state.last_audio = self.clock()
        state.received_samples += chunk.size
        if end_of_stream:
            state.end_seq = seq
        state.parked[seq] = _Parked(chunk, start_s, ref)
        state.parked_samples += chunk.size
        self._held += chunk.size
        out = self._take_in_order(stream_id, state)
        if len(state.parked) > self.max_parked:
            out += self._skip_gaps(stream_id, state)
        out += self._close_if_ended(stream_id, state)
        return out + self._relieve_pressure()

    def poll(self) -> list[Window]:
        """Flush every stream idle for ``idle_flush_s``; close those past ``stream_expiry_s``."""
        now = self.clock()
        out: list[Window] = []
        for stream_id, state in list(self._streams.items()):
            quiet = now - state.last_audio
            if self.stream_expiry_s is not None and quiet >= self.stream_expiry_s:
                out += self._flush_all(stream_id, state, "expired")
                if stream_id in self._streams:
                    self._close(stream_id, state)
                    self.stats.expired += 1
            elif quiet >= self.idle_flush_s and not state.empty:
                out += self._flush_all(stream_id, state, "idle")
        return out

    def next_deadline(self) -> float | None:
        """Clock time at which :meth:`poll` will next have something to do (None: nothing open)."""
        times: list[float] = []
        for s in self._streams.values():
            if not s.empty:
                times.append(s.last_audio + self.idle_flush_s)
            if self.stream_expiry_s is not None:
                times.append(s.last_audio + self.stream_expiry_s)
        return min(times, default=None)

    def drain(self) -> list[Window]:
        """Flush everything held, gaps skipped (for shutdown)."""
        out: list[Window] = []
        for stream_id in list(self._streams):
            out += self.drain_stream(stream_id)
        return out

    def drain_stream(self, stream_id: str) -> list[Window]:
        state = self._streams.get(stream_id)
        return [] if state is None else self._flush_all(stream_id, state, "drain")

    def discard(self, group: Hashable) -> None:
        """Forget every stream of ``group``, open or closed, emitting nothing (a revoked partition)."""
        for stream_id, state in list(self._streams.items()):
            if state.group == group:
                self._held -= state.held
                del self._streams[stream_id]
        for stream_id in [k for k, c in self._closed.items() if c.group == group]:
            del self._closed[stream_id]

    def pending_refs(self, group: Hashable = None) -> list[Hashable]:
        """Refs of chunks held (buffered or parked) and not yet part of an emitted window.

        With ``group``, only those of that group's streams.
        """
        refs: list[Hashable] = []
        for state in self._streams.values():
            if group is not None and state.group != group:
                continue
            refs += [p.ref for p in state.pieces if p.ref is not None]
            refs += [p.ref for p in state.parked.values() if p.ref is not None]
        return refs

    def is_open(self, stream_id: str) -> bool:
        return stream_id in self._streams

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def buffered_s(self) -> float:
        """Seconds of audio held over all open streams (buffered and parked)."""
        return self._held / self.sample_rate

    # --- opening and closing -----------------------------------------------------------------
    def _check_length(self, stream_id: str, seq: int, received: int, size: int) -> None:
        limit = self.max_stream_samples
        if limit is not None and received + size > limit:
            raise InvalidEvent(
                f"audio: stream {stream_id} would exceed the limit of {limit / self.sample_rate:g} s "
                f"at seq {seq}"
            )

    def _make_room(self, stream_id: str) -> None:
        """Evict the least recently active stream holding nothing, or refuse to open ``stream_id``."""
        cap = self.max_open_streams
        if cap is None or len(self._streams) < cap:
            return
        idle = [(s.last_audio, k) for k, s in self._streams.items() if s.empty]
        if not idle:
            self.stats.refused += 1
            raise InvalidEvent(
                f"audio: too many open streams: {len(self._streams)} streams hold audio "
                f"(asr.max_open_streams = {cap}); stream {stream_id} not opened"
            )
        _, victim = min(idle)
        self._close(victim, self._streams[victim])
        self.stats.evicted += 1

    def _open(self, stream_id: str, resume: _Resume, group: Hashable) -> _Stream:
        self._closed.pop(stream_id, None)
        state = _Stream(
            next_seq=resume.next_seq,
            cursor_s=resume.cursor_s,
            last_audio=self.clock(),
            group=group,
            received_samples=resume.received_samples,
        )
        self._streams[stream_id] = state
        return state

    def _close(self, stream_id: str, state: _Stream) -> None:
        """Free an open stream that holds nothing; a tombstone remembers where it continues."""
        del self._streams[stream_id]
        resume = _Resume(state.next_seq, state.cursor_s, state.received_samples)
        self._tombstone(stream_id, state.group, resume)

    def _tombstone(self, stream_id: str, group: Hashable, resume: _Resume | None) -> None:
        self._closed[stream_id] = _Closed(group, resume)
        self._closed.move_to_end(stream_id)
        while len(self._closed) > self._max_closed:
            self._closed.popitem(last=False)

    def _relieve_pressure(self) -> list[Window]:
        cap = self.max_buffered_samples
        out: list[Window] = []
        while cap is not None and self._held > cap and self._streams:
            stream_id, state = max(self._streams.items(), key=lambda kv: kv[1].held)
            if not state.held:
                break
            self.stats.pressure += 1
            out += self._flush_all(stream_id, state, "pressure")
        return out

    # --- internals ---------------------------------------------------------------------------
    def _flush_all(self, stream_id: str, state: _Stream, reason: FlushReason) -> list[Window]:
        """Emit everything ``stream_id`` holds, gaps skipped; the stream stays open unless it ended."""
        out = self._skip_gaps(stream_id, state)
        out += self._close_if_ended(stream_id, state)
        if stream_id in self._streams and state.pieces:
            out += self._emit(stream_id, state, state.buffered, reason)
        return out

    def _take_in_order(self, stream_id: str, state: _Stream) -> list[Window]:
        out: list[Window] = []
        while state.next_seq in state.parked:
            seq = state.next_seq
            chunk = state.parked.pop(seq)
            state.parked_samples -= chunk.samples.size
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
            missing = range(state.next_seq, nxt)
            if state.pieces:
                out += self._emit(stream_id, state, state.buffered, "gap")
            self.stats.gaps += 1
            chunk = state.parked[nxt]
            if chunk.start_s is None:
                average = (
                    state.taken_samples / state.taken_chunks if state.taken_chunks else chunk.samples.size
                )
                state.cursor_s += (nxt - state.next_seq) * average / self.sample_rate
            state.next_seq = nxt
            state.gap_before = missing
            out += self._take_in_order(stream_id, state)
        return out

    def _close_if_ended(self, stream_id: str, state: _Stream) -> list[Window]:
        if state.end_seq is None or state.next_seq <= state.end_seq:
            return []
        out = self._emit(stream_id, state, state.buffered, "end", final=True)
        del self._streams[stream_id]
        self._tombstone(stream_id, state.group, None)
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
        split: Hashable | None = None
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
                split = piece.ref
                remaining = 0
        while state.pieces and state.pieces[0].samples.size == 0:  # markers that carry only a ref
            piece = state.pieces.pop(0)
            if piece.ref is not None:
                refs.append(piece.ref)
        samples = np.concatenate(taken) if taken else np.zeros(0, np.float32)
        state.buffered -= samples.size
        self._held -= samples.size
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
            split_ref=split,
        )
        state.start_s += samples.size / self.sample_rate
        state.gap_before = range(0)
        self.stats.windows += 1
        return [window]
