"""The transcript store's staged writes against the real PostgreSQL/pgvector: what it refuses, per window,
and that nothing is visible before the commit (nor after leaving without one)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
from audio_kafka import TENANT, fetch

from wavegraph.events import Segment, TranscriptEvent
from wavegraph.processors.audio.cursor import StreamPosition
from wavegraph.settings import Settings
from wavegraph.sinks.transcripts import StoredWindow, TranscriptStore

pytestmark = pytest.mark.services


@pytest.fixture
async def store(audio_db: Settings) -> AsyncIterator[TranscriptStore]:
    async with await TranscriptStore.open(audio_db.postgres) as opened:
        yield opened


def window(stream: str, index: int, text: str, vector: np.ndarray | None = None) -> StoredWindow:
    event = TranscriptEvent(
        tenant=TENANT,
        stream_id=stream,
        window=index,
        start_s=2.0 * index,
        end_s=2.0 * index + 2.0,
        text=text,
        segments=[Segment(start_s=2.0 * index, end_s=2.0 * index + 1.0, text="seg")],
        model="tiny.en",
        device="cpu",
        processing_ms=1.0,
        xrt=0.1,
    )
    unit = np.zeros(384, np.float32)
    unit[0] = 1.0
    return StoredWindow(
        event=event,
        first_seq=index,
        last_seq=index,
        position=StreamPosition(next_seq=index + 1, start_s=event.end_s, next_window=index + 1),
        embedding=unit if vector is None else vector,
        segment_embeddings=unit[None, :],
    )


async def rows(settings: Settings, stream: str) -> list[int]:
    found = await fetch(
        settings,
        "SELECT window_index FROM transcripts WHERE tenant = $1 AND stream_id = $2 ORDER BY 1",
        TENANT,
        stream,
    )
    return [r["window_index"] for r in found]


async def test_windows_postgres_refuses_are_isolated_and_the_rest_commits(
    store: TranscriptStore, audio_db: Settings
) -> None:
    stream = f"staged-{uuid.uuid4().hex[:8]}"
    nan = np.full(384, np.nan, np.float32)
    batch = [
        window(stream, 0, "fine"),
        window(stream, 1, "a NUL \x00 here"),
        window(stream, 2, "fine too"),
        window(stream, 3, "a NaN vector", nan),
    ]
    async with store.transaction() as tx:
        refused = await tx.write(batch)
        assert await rows(audio_db, stream) == []  # staged: not visible to others yet
        await tx.commit()
    assert refused[0] is None and refused[2] is None
    assert refused[1] is not None and refused[1].startswith("CharacterNotInRepertoireError: ")
    assert refused[1].endswith('invalid byte sequence for encoding "UTF8": 0x00')
    assert refused[3] == "DataError: NaN not allowed in vector"
    assert await rows(audio_db, stream) == [0, 2]
    positions = await store.positions([(TENANT, stream)])
    assert positions[(TENANT, stream)].next_window == 3


async def test_leaving_the_transaction_without_commit_writes_nothing(
    store: TranscriptStore, audio_db: Settings
) -> None:
    stream = f"rolled-{uuid.uuid4().hex[:8]}"
    async with store.transaction() as tx:
        assert await tx.write([window(stream, 0, "fine")]) == [None]
    with pytest.raises(RuntimeError, match="publish failed"):
        async with store.transaction() as tx:
            await tx.write([window(stream, 1, "fine")])
            raise RuntimeError("publish failed")
    assert await rows(audio_db, stream) == []
    assert await store.save([window(stream, 0, "fine")]) == [None]
    assert await rows(audio_db, stream) == [0]


async def test_a_window_written_twice_is_one_copy_in_every_table(
    store: TranscriptStore, audio_db: Settings
) -> None:
    """A replay writes the same window again (same tenant, stream and index): one transcript row, one
    embedding row and one set of segments, holding the later write."""
    stream = f"twice-{uuid.uuid4().hex[:8]}"
    first = window(stream, 0, "first take")
    again = window(stream, 0, "second take")
    two_segments = again.event.model_copy(
        update={
            "segments": [
                Segment(start_s=0.0, end_s=0.5, text="second"),
                Segment(start_s=0.5, end_s=1.0, text="take"),
            ]
        }
    )
    unit = again.embedding
    again = StoredWindow(
        event=two_segments,
        first_seq=0,
        last_seq=0,
        position=again.position,
        embedding=unit,
        segment_embeddings=np.stack([unit, unit]),
    )
    assert first.event.event_id == again.event.event_id  # the id is the window's, not the write's
    assert await store.save([first]) == [None]
    assert await store.save([again]) == [None]
    async with store.transaction() as tx:  # and a third time, through a staged write
        assert await tx.write([again]) == [None]
        await tx.commit()
    transcripts = await fetch(
        audio_db,
        "SELECT text, event_id FROM transcripts WHERE tenant = $1 AND stream_id = $2",
        TENANT,
        stream,
    )
    assert [(r["text"], r["event_id"]) for r in transcripts] == [("second take", again.event.event_id)]
    segments = await fetch(
        audio_db,
        "SELECT segment, text FROM transcript_segments WHERE tenant = $1 AND stream_id = $2 ORDER BY 1",
        TENANT,
        stream,
    )
    assert [(r["segment"], r["text"]) for r in segments] == [(0, "second"), (1, "take")]
    embeddings = await fetch(
        audio_db,
        "SELECT text FROM embeddings WHERE tenant = $1 AND kind = 'transcript' AND id = $2",
        TENANT,
        again.event.event_id,
    )
    assert [r["text"] for r in embeddings] == ["second take"]
