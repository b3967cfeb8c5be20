"""The transcription sink with in-process fakes, only for what cannot be caused for real.

Every behaviour the real services can produce is tested against them in
``tests/integration/processors/audio/test_sink.py`` (real Whisper, MiniLM, PostgreSQL, Kafka; a real
PostgreSQL outage through a cut proxy). What stays here needs a fault or an interleaving the real ones
cannot be made to give on demand:

- the embedder refusing one text (MiniLM encodes any string; the fake refuses texts with "poison"),
- whisper or the embedder raising ``MissingPrerequisite`` or ``MemoryError`` mid-run (an outage of the
  process itself),
- revocation landing at an exact point of a running flush (during a transcription, between staging and
  publishing, between two sends, while positions are looked up): the fakes hold each step on an event
  so the race is the same on every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import numpy as np
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from wavegraph.errors import InvalidEvent, MissingPrerequisite, SinkBackpressureError
from wavegraph.events import TranscriptEvent
from wavegraph.processors.asr.engine import Segment, Transcript
from wavegraph.processors.audio.cursor import StreamPosition
from wavegraph.processors.audio.decoder import AudioChunk
from wavegraph.processors.audio.sink import AudioSink
from wavegraph.settings import Settings
from wavegraph.sinks.transcripts import StoredWindow
from wavegraph.streams.sink import Item, Rejection

TOPIC = "audio"
TP = TopicPartition(TOPIC, 0)
TP1 = TopicPartition(TOPIC, 1)
RATE = 16_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTranscriber:
    """Words that name the window's start; ``fail_at`` maps a start time to the exception to raise,
    ``text_at`` a window length (seconds) to the text to return."""

    batch_size = 2

    def __init__(self) -> None:
        self.calls = 0
        self.fail_at: dict[float, BaseException] = {}
        self.text_at: dict[float, str] = {}
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def transcribe(self, samples: np.ndarray, *, start_s: float = 0.0) -> Transcript:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if start_s in self.fail_at:
            raise self.fail_at[start_s]
        audio_s = samples.size / RATE
        text = self.text_at.get(audio_s, f"words at {start_s:g}")
        seg = Segment(start_s, start_s + audio_s, text)
        return Transcript(seg.text, (seg,), "tiny.en", "cpu", start_s, audio_s, 10.0, 0.01)


class FakeEmbedder:
    def __init__(self) -> None:
        self.fail: BaseException | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail is not None:
            raise self.fail
        if any("poison" in t for t in texts):
            raise RuntimeError("tokenizer: cannot encode")
        out = np.zeros((len(texts), 384), np.float32)
        out[:, 0] = 1.0
        return out


class FakeTx:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.staged: list[StoredWindow] = []
        self.committed = False

    async def write(self, windows: Sequence[StoredWindow]) -> list[str | None]:
        if self.store.write_gate is not None:
            self.store.write_started.set()
            await self.store.write_gate.wait()
        if self.store.fail:
            self.store.fail -= 1
            raise OSError("connection refused")
        out: list[str | None] = []
        for w in windows:
            if "\x00" in w.event.text:
                out.append('CharacterNotInRepertoireError: invalid byte sequence for encoding "UTF8": 0x00')
            else:
                self.staged.append(w)
                out.append(None)
        return out

    async def commit(self) -> None:
        self.store.saved.extend(self.staged)
        self.committed = True


class FakeStore:
    """Positions come from what was committed (like the real store), or from ``positions``."""

    def __init__(self, fail: int = 0, positions: dict[tuple[str, str], StreamPosition] | None = None) -> None:
        self.fail = fail
        self.saved: list[StoredWindow] = []
        self.stored_positions = positions or {}
        self.rollbacks = 0
        self.write_gate: asyncio.Event | None = None
        self.write_started = asyncio.Event()

    async def positions(self, streams: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StreamPosition]:
        found = {k: v for k, v in self.stored_positions.items() if k in streams}
        for w in self.saved:
            if (w.event.tenant, w.event.stream_id) in streams:
                found[(w.event.tenant, w.event.stream_id)] = w.position
        return found

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTx]:
        tx = FakeTx(self)
        try:
            yield tx
        finally:
            if not tx.committed:
                self.rollbacks += 1

    def streams(self) -> list[str]:
        return [w.event.stream_id for w in self.saved]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.gate: asyncio.Event | None = None
        self.sending = asyncio.Event()
        self.too_large: set[str] = set()

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        if self.gate is not None:
            self.sending.set()
            await self.gate.wait()
            self.gate = None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if any(s.encode() in value for s in self.too_large):
            future.set_exception(MessageSizeTooLargeError())
            return future
        self.sent.append(value)
        future.set_result(None)
        return future

    def streams(self) -> list[str]:
        return [TranscriptEvent.model_validate_json(v).stream_id for v in self.sent]


def make_sink(
    store: FakeStore, clock: Clock | None = None, **asr: Any
) -> tuple[AudioSink, FakeTranscriber, FakeProducer]:
    base = Settings()
    settings = base.model_copy(update={"asr": base.asr.model_copy(update=asr)})
    transcriber, producer = FakeTranscriber(), FakeProducer()
    sink = AudioSink(
        settings,
        cast(Any, transcriber),
        cast(Any, FakeEmbedder()),
        cast(Any, store),
        cast(Any, producer),
        clock=clock or Clock(),
    )
    return sink, transcriber, producer


def items(
    stream: str,
    seconds: Sequence[float],
    *,
    first_offset: int = 0,
    first_seq: int = 0,
    eos: bool = False,
    partition: int = 0,
) -> list[Item[AudioChunk]]:
    out = []
    for i, s in enumerate(seconds):
        samples = np.full(int(s * RATE), 0.1, np.float32)
        chunk = AudioChunk("acme", stream, first_seq + i, samples, eos and i == len(seconds) - 1)
        out.append(
            Item(value=chunk, topic=TOPIC, partition=partition, offset=first_offset + i, raw=b"pcm%d" % i)
        )
    return out


def offsets(rejections: list[Rejection[AudioChunk]]) -> list[tuple[str, int]]:
    return sorted((r.item.value.stream_id, r.item.offset) for r in rejections)


# --- poison windows: dead letters, and the stream goes on -----------------------------------------


async def test_a_text_the_embedder_refuses_is_isolated() -> None:
    store = FakeStore()
    sink, transcriber, producer = make_sink(store)
    transcriber.text_at[2.0] = "poison words"
    await sink.write(items("bad", [2.0, 0.0], eos=True))
    await sink.write(items("good", [1.0, 0.0], eos=True, first_offset=2))
    rejected = await sink.flush()  # both windows embedded in one batch first, then one by one
    assert offsets(rejected) == [("bad", 0), ("bad", 1)]
    assert rejected[0].reason.startswith("embedding: window 0 of acme/bad")
    assert store.streams() == ["good"] and producer.streams() == ["good"]


@pytest.mark.parametrize(
    "outage",
    [MissingPrerequisite("model gone"), MemoryError()],
    ids=["model", "memory"],
)
async def test_whisper_or_embedder_outages_are_backpressure(outage: BaseException) -> None:
    store = FakeStore()
    sink, transcriber, _ = make_sink(store)
    transcriber.fail_at[0.0] = outage
    await sink.write(items("s", [2.0, 0.0], eos=True))
    with pytest.raises(SinkBackpressureError):
        await sink.flush()
    assert sink.committable(TP, 2) == 0
    del transcriber.fail_at[0.0]
    embedder = cast(FakeEmbedder, sink._embedder)
    embedder.fail = outage
    with pytest.raises(SinkBackpressureError):
        await sink.flush()
    embedder.fail = None
    assert await sink.flush() == [] and store.streams() == ["s"]


# --- revocation while a flush is running ----------------------------------------------------------


def two_partitions() -> list[Item[AudioChunk]]:
    return items("p0", [2.0, 0.0], eos=True) + items("p1", [2.0, 0.0], eos=True, partition=1)


async def test_revocation_during_transcription_drops_the_partitions_windows() -> None:
    store = FakeStore()
    sink, transcriber, producer = make_sink(store)
    transcriber.gate = asyncio.Event()
    await sink.write(two_partitions())
    flush = asyncio.create_task(sink.flush())
    await transcriber.started.wait()
    sink.revoked([TP1])
    transcriber.gate.set()
    assert await flush == []
    assert store.streams() == ["p0"] and producer.streams() == ["p0"]
    assert sink.committable(TP, 2) == 2
    assert sink.committable(TP1, 2) == 0  # what was dropped stays uncommitted for the new owner


async def test_revocation_while_staging_rolls_the_partitions_rows_back() -> None:
    store = FakeStore()
    sink, _, producer = make_sink(store)
    store.write_gate = asyncio.Event()
    await sink.write(two_partitions())
    flush = asyncio.create_task(sink.flush())
    await store.write_started.wait()  # both windows transcribed, not yet published nor stored
    sink.revoked([TP1])
    store.write_gate.set()
    assert await flush == []
    assert store.streams() == ["p0"] and producer.streams() == ["p0"]


async def test_revocation_between_two_sends_publishes_nothing_more_for_the_partition() -> None:
    store = FakeStore()
    sink, _, producer = make_sink(store)
    producer.gate = asyncio.Event()
    await sink.write(two_partitions())
    flush = asyncio.create_task(sink.flush())
    await producer.sending.wait()  # p0's event is being handed to the producer
    sink.revoked([TP1])
    producer.gate.set()
    assert await flush == []
    assert producer.streams() == ["p0"] and store.streams() == ["p0"]
    assert store.rollbacks == 1  # p1's staged row was rolled back, p0 written again


async def test_revocation_drops_the_partitions_dead_letters_but_keeps_them_uncommitted() -> None:
    store = FakeStore()
    sink, transcriber, _ = make_sink(store)
    transcriber.gate = asyncio.Event()
    transcriber.fail_at[0.0] = InvalidEvent("audio: samples contain NaN or infinity")
    await sink.write(items("p1", [2.0, 0.0], eos=True, partition=1, first_offset=7))
    flush = asyncio.create_task(sink.flush())
    await transcriber.started.wait()
    sink.revoked([TP1])
    transcriber.gate.set()
    assert await flush == []  # the new owner dead-letters them
    assert sink.committable(TP1, 9) == 7


async def test_revocation_while_looking_up_positions_takes_nothing_of_the_partition() -> None:
    store = FakeStore()
    sink, _, _ = make_sink(store)
    started, gate = asyncio.Event(), asyncio.Event()
    positions = store.positions

    async def slow(streams: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StreamPosition]:
        started.set()
        await gate.wait()
        return await positions(streams)

    store.positions = slow  # type: ignore[method-assign]
    write = asyncio.create_task(sink.write(two_partitions()))
    await started.wait()
    sink.revoked([TP1])
    gate.set()
    await write
    await sink.flush()
    assert store.streams() == ["p0"] and sink.committable(TP1, 2) == 0
