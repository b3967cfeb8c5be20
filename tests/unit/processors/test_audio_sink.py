"""The transcription sink without services: commit gate, idle flush, outage retry, revocation, resume."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytest
from aiokafka import TopicPartition

from wavegraph.errors import SinkBackpressureError
from wavegraph.processors.asr.engine import Segment, Transcript
from wavegraph.processors.audio_chunks import AudioChunk
from wavegraph.processors.audio_sink import AudioSink
from wavegraph.processors.stream_cursor import StreamPosition
from wavegraph.processors.transcript_store import StoredWindow
from wavegraph.settings import Settings
from wavegraph.streams.sink import Item

TOPIC = "audio"
TP = TopicPartition(TOPIC, 0)
RATE = 16_000


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTranscriber:
    batch_size = 2
    calls = 0

    async def transcribe(self, samples: np.ndarray, *, start_s: float = 0.0) -> Transcript:
        self.calls += 1
        audio_s = samples.size / RATE
        seg = Segment(start_s, start_s + audio_s, f"words at {start_s:g}")
        return Transcript(seg.text, (seg,), "tiny.en", "cpu", start_s, audio_s, 10.0, 0.01)


class FakeEmbedder:
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), np.float32)
        out[:, 0] = 1.0
        return out


class FakeStore:
    def __init__(self, fail: int = 0, positions: dict[tuple[str, str], StreamPosition] | None = None) -> None:
        self.fail = fail
        self.saved: list[StoredWindow] = []
        self.stored_positions = positions or {}

    async def positions(self, streams: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StreamPosition]:
        return {k: v for k, v in self.stored_positions.items() if k in streams}

    async def save(self, windows: Sequence[StoredWindow]) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("connection refused")
        self.saved.extend(windows)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def make_sink(
    store: FakeStore, clock: Clock | None = None
) -> tuple[AudioSink, FakeTranscriber, FakeProducer]:
    settings = Settings()
    transcriber, producer = FakeTranscriber(), FakeProducer()
    sink = AudioSink(
        settings,
        cast(Any, transcriber),
        FakeEmbedder(),
        cast(Any, store),
        cast(Any, producer),
        clock=clock or Clock(),
    )
    return sink, transcriber, producer


def items(
    stream: str, seconds: Sequence[float], *, first_offset: int = 0, eos: bool = False
) -> list[Item[AudioChunk]]:
    out = []
    for seq, s in enumerate(seconds):
        samples = np.full(int(s * RATE), 0.1, np.float32)
        chunk = AudioChunk("acme", stream, seq, samples, eos and seq == len(seconds) - 1)
        out.append(Item(chunk, TOPIC, 0, first_offset + seq, b""))
    return out


async def test_open_window_holds_the_commit_until_it_is_stored() -> None:
    store = FakeStore()
    sink, transcriber, producer = make_sink(store)
    batch = items("s", [2.0, 2.0, 2.0, 0.0], eos=True)
    await sink.write(batch[:3])
    assert await sink.flush() == []
    assert sink.committable(TP, 3) == 0  # chunk 0 is in an open window
    assert transcriber.calls == 0
    await sink.write(batch[3:])
    await sink.flush()
    assert sink.committable(TP, 4) == 4
    (window,) = store.saved
    assert window.event.window == 0 and window.position.final and window.position.next_seq == 4
    assert len(producer.sent) == 1


async def test_idle_stream_is_flushed_when_its_deadline_passes() -> None:
    clock, store = Clock(), FakeStore()
    sink, _, _ = make_sink(store, clock)
    assert sink.next_deadline() is None
    await sink.write(items("s", [2.0]))
    deadline = sink.next_deadline()
    assert deadline == clock.now + Settings().asr.idle_flush_s
    await sink.flush()
    assert not store.saved
    clock.now = deadline
    await sink.flush()
    assert len(store.saved) == 1 and store.saved[0].event.end_s == pytest.approx(2.0)
    assert sink.committable(TP, 1) == 1


async def test_an_outage_is_backpressure_and_the_retry_reuses_the_transcript() -> None:
    store = FakeStore(fail=1)
    sink, transcriber, producer = make_sink(store)
    await sink.write(items("s", [2.0, 0.0], eos=True))
    with pytest.raises(SinkBackpressureError):
        await sink.flush()
    assert sink.committable(TP, 2) == 0
    assert sink.next_deadline() is not None  # the outbox asks for a retry without new records
    await sink.write(items("s", [2.0, 0.0], eos=True))  # the runtime redelivers the batch: duplicates
    await sink.flush()
    assert transcriber.calls == 1 and len(producer.sent) == 1 and len(store.saved) == 1
    assert sink.committable(TP, 2) == 2


async def test_revoked_partitions_are_forgotten() -> None:
    sink, _, _ = make_sink(FakeStore())
    await sink.write(items("s", [2.0, 2.0]))
    assert sink.committable(TP, 2) == 0
    sink.revoked([TP])
    assert sink.committable(TP, 2) == 2 and sink.next_deadline() is None


async def test_a_stored_position_resumes_the_stream() -> None:
    position = StreamPosition(next_seq=2, skip=RATE, start_s=5.0, next_window=3)
    store = FakeStore(positions={("acme", "s"): position})
    sink, _, _ = make_sink(store)
    await sink.write(items("s", [2.0, 2.0, 3.0, 1.0, 0.0], eos=True))  # replayed from the start
    await sink.flush()
    (window,) = store.saved
    assert window.event.window == 3  # numbering continues
    assert window.event.start_s == pytest.approx(5.0)
    assert window.event.end_s == pytest.approx(5.0 + 2.0 + 1.0)  # 2 s left of chunk 2, then chunk 3
    assert sink.stats["ignored"] == 0


async def test_a_finished_stream_is_ignored_on_replay() -> None:
    store = FakeStore(positions={("acme", "s"): StreamPosition(next_seq=3, next_window=1, final=True)})
    sink, transcriber, _ = make_sink(store)
    await sink.write(items("s", [2.0, 2.0, 0.0], eos=True))
    await sink.flush()
    assert sink.stats["ignored"] == 3 and transcriber.calls == 0 and sink.committable(TP, 3) == 3
