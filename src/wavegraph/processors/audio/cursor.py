"""Where an audio stream stands after each transcribed window, so a restart resumes it exactly.

A stream's chunks arrive as Kafka records; the :class:`~wavegraph.processors.asr.windows.WindowAssembler`
turns them into windows, sometimes cutting a window inside a chunk (at the quietest 100 ms of a full
window). The position after a window is the pair ``(next_seq, skip)``: the sequence number of the
first chunk not fully transcribed yet and how many of its (16 kHz) samples already are, plus the
stream time at which the next window starts and the next window's index. It is stored with every
window, in the same transaction, so that after a restart (the offsets of open windows were not
committed and are replayed) chunks before ``next_seq`` are ignored, the first ``skip`` samples of
chunk ``next_seq`` are cut off, and numbering continues at ``next_window``: a stored window is never
transcribed twice and window indices, hence transcript ids ``id(tenant, stream, window)``, are the same
on every replay.

For a window ``W`` whose completed chunks are ``R`` (``W.refs``) and whose last chunk is ``L``, starting
from position ``(s, k)``::

    if L in R:      next = (max(R) + 1, 0)
    else:           next = (L, (k if L == s else 0) + |W| - sum_{r in R} (|r| - (k if r == s else 0)))

where ``|r|`` is the decoded length of chunk ``r`` and ``|W|`` the window's length, in samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from wavegraph.processors.asr.windows import Window
from wavegraph.streams.sink import Item


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """The record a chunk came from and its decoded length; the assembler hands it back in windows.

    ``item`` is the record itself (value, raw bytes, headers), kept so that a window that cannot be
    transcribed or stored can dead-letter the records it holds; it takes no part in equality.
    """

    partition: int
    offset: int
    seq: int
    samples: int
    item: Item[Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """The start of what is not yet transcribed (see the module docstring); a new stream is all zeros."""

    next_seq: int = 0
    skip: int = 0
    start_s: float = 0.0
    next_window: int = 0
    final: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "next_seq": self.next_seq,
            "skip": self.skip,
            "start_s": self.start_s,
            "next_window": self.next_window,
            "final": self.final,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamPosition:
        return cls(
            next_seq=int(data["next_seq"]),
            skip=int(data["skip"]),
            start_s=float(data["start_s"]),
            next_window=int(data["next_window"]),
            final=bool(data["final"]),
        )


def window_refs(window: Window) -> list[ChunkRef]:
    """The chunks whose audio ``window`` completes."""
    return [r for r in window.refs if isinstance(r, ChunkRef)]


def window_records(window: Window) -> list[ChunkRef]:
    """Every chunk with audio in ``window``: those it completes and the one it cuts (``split_ref``)."""
    refs = window_refs(window)
    if isinstance(window.split_ref, ChunkRef) and window.split_ref not in refs:
        refs.append(window.split_ref)
    return refs


def advance(position: StreamPosition, window: Window, *, counted: bool) -> StreamPosition:
    """The position after ``window``; ``counted`` when the window gets an index (it holds audio)."""
    refs = window_refs(window)
    done = {r.seq for r in refs}
    if window.samples.size == 0 and not refs:
        return replace(position, final=position.final or window.final)
    if window.last_seq in done:
        next_seq, skip = max(done) + 1, 0
    else:
        s, k = position.next_seq, position.skip
        from_complete = sum(r.samples - (k if r.seq == s else 0) for r in refs)
        in_last = window.samples.size - from_complete
        next_seq, skip = window.last_seq, (k if window.last_seq == s else 0) + in_last
    return StreamPosition(
        next_seq=next_seq,
        skip=skip,
        start_s=window.end_s,
        next_window=position.next_window + (1 if counted else 0),
        final=position.final or window.final,
    )
