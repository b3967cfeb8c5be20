"""What the replay stores for a transcript event: the transcription sink's rows, cursor included."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from wavegraph.events import Segment, TranscriptEvent, WindowCursor
from wavegraph.processors.audio.cursor import StreamPosition
from wavegraph.processors.replay.transcripts import stored_window
from wavegraph.sinks.transcripts import StoredWindow


def event(cursor: WindowCursor | None) -> TranscriptEvent:
    return TranscriptEvent(
        tenant="acme",
        stream_id="s1",
        window=2,
        start_s=8.0,
        end_s=11.5,
        text="ask not",
        segments=[Segment(start_s=8.0, end_s=9.0, text="ask"), Segment(start_s=9.0, end_s=11.5, text="not")],
        model="tiny.en",
        device="cpu",
        processing_ms=12.5,
        xrt=0.05,
        cursor=cursor,
    )


def test_the_metadata_is_what_the_sink_stored() -> None:
    position = StreamPosition(next_seq=6, skip=1600, start_s=11.5, next_window=3, final=True)
    cursor = WindowCursor(
        first_seq=4, last_seq=6, next_seq=6, skip=1600, start_s=11.5, next_window=3, final=True
    )
    vectors = np.eye(3, 384, dtype=np.float32)
    live = StoredWindow(event(None), 4, 6, position, vectors[0], vectors[1:])
    replayed = stored_window(event(cursor), vectors)
    assert orjson.loads(replayed.metadata()) == orjson.loads(live.metadata())
    assert replayed.position == position and (replayed.first_seq, replayed.last_seq) == (4, 6)
    assert np.array_equal(replayed.embedding, vectors[0])
    assert np.array_equal(replayed.segment_embeddings, vectors[1:])


def test_an_event_without_a_cursor_is_stored_without_a_position() -> None:
    meta = orjson.loads(stored_window(event(None), np.zeros((3, 384), np.float32)).metadata())
    assert meta == {"stream_id": "s1", "window": 2, "start_s": 8.0, "end_s": 11.5, "model": "tiny.en"}


def test_one_vector_per_text_of_the_window() -> None:
    with pytest.raises(ValueError, match="2 vectors for a window of 2 segments"):
        stored_window(event(None), np.zeros((2, 384), np.float32))
