"""The transcription sink against the real services: the real tiny.en Whisper, the real MiniLM embedder,
the real transcript store on PostgreSQL and a real Kafka producer.

Commit gate, idle flush, an outage and its retry, revocation, resuming from a stored position, poison
windows, bounded memory. The outage is real: the store reaches PostgreSQL through a TCP proxy the test
cuts. Whisper tiny.en never fails on a window and never writes a NUL character, so those two faults are
injected by :class:`Counted`, a thin wrapper around the real engine (it also counts the calls); a too
large event is refused by the real producer (``kafka.max_message_bytes`` lowered to 600 bytes).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from aiokafka import TopicPartition
from audio_kafka import TENANT, fetch, read_topic, unique_settings
from tcp_proxy import CuttableProxy

from wavegraph.clients import make_producer
from wavegraph.errors import SinkBackpressureError
from wavegraph.events import TranscriptEvent
from wavegraph.processors.asr.audio import load_audio_file
from wavegraph.processors.asr.engine import Transcriber, Transcript
from wavegraph.processors.asr.samples import JFK_TEXT, jfk_wav
from wavegraph.processors.asr.wer import wer
from wavegraph.processors.audio.cursor import StreamPosition
from wavegraph.processors.audio.decoder import AudioChunk
from wavegraph.processors.audio.sink import AudioSink
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.settings import Settings
from wavegraph.sinks.transcripts import StoredWindow, TranscriptStore
from wavegraph.streams.sink import Item, Rejection
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services

RATE = 16_000
TOPIC = "audio"
TP, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


@pytest.fixture(scope="module")
def whisper(audio_db: Settings) -> Iterator[Transcriber]:
    """One real Whisper for the module (closed at its end: no ASR thread outlives it)."""
    settings = audio_db.model_copy(update={"asr": audio_db.asr.model_copy(update={"threads": 1})})
    with Transcriber(settings) as engine:
        engine.warm_up()
        yield engine


class Counted:
    """The real engine, counting its calls; ``fail_at`` (window start → exception) and ``nul_size`` (a
    window of that many samples gets a NUL in its real transcript) inject the two faults Whisper never
    produces."""

    def __init__(self, real: Transcriber) -> None:
        self.real = real
        self.model, self.device, self.batch_size = real.model, real.device, real.batch_size
        self.calls = 0
        self.fail_at: dict[float, BaseException] = {}
        self.nul_size: int | None = None

    async def transcribe(self, samples: np.ndarray, *, start_s: float = 0.0) -> Transcript:
        self.calls += 1
        if start_s in self.fail_at:
            raise self.fail_at[start_s]
        t = await self.real.transcribe(samples, start_s=start_s)
        if samples.size == self.nul_size:
            return Transcript(
                t.text + " \x00", t.segments, t.model, t.device, t.start_s, t.audio_s, t.processing_ms, t.xrt
            )
        return t


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Env:
    """A sink on the real services, its own transcripts topic and stream ids; see :func:`env`."""

    def __init__(self, settings: Settings, whisper: Counted, store: TranscriptStore, sink: AudioSink) -> None:
        self.settings, self.whisper, self.store, self.sink = settings, whisper, store, sink
        self.uid = uuid.uuid4().hex[:8]

    def sid(self, name: str) -> str:
        return f"{name}-{self.uid}"

    def items(
        self,
        name: str,
        seconds: Sequence[float] = (),
        *,
        audio: Sequence[np.ndarray] | None = None,
        first_offset: int = 0,
        first_seq: int = 0,
        eos: bool = False,
        partition: int = 0,
    ) -> list[Item[AudioChunk]]:
        """Chunks of digital silence of ``seconds`` each (Whisper hears nothing), or ``audio``."""
        chunks = list(audio) if audio is not None else [np.zeros(int(s * RATE), np.float32) for s in seconds]
        out = []
        for i, samples in enumerate(chunks):
            chunk = AudioChunk(TENANT, self.sid(name), first_seq + i, samples, eos and i == len(chunks) - 1)
            out.append(Item(chunk, TOPIC, partition, first_offset + i, b"pcm%d" % i))
        return out

    async def published(self) -> list[TranscriptEvent]:
        records = await read_topic(self.settings, self.settings.kafka.topics.transcripts, 1)
        return [TranscriptEvent.model_validate_json(r.value) for r in records]

    async def published_streams(self) -> list[str]:
        return [e.stream_id.removesuffix(f"-{self.uid}") for e in await self.published()]

    async def stored(self) -> list[Any]:
        return await fetch(
            self.settings,
            "SELECT stream_id, window_index, start_s, end_s, text FROM transcripts "
            "WHERE tenant = $1 AND stream_id LIKE $2 ORDER BY stream_id, window_index",
            TENANT,
            f"%-{self.uid}",
        )

    async def stored_streams(self) -> list[str]:
        return [r["stream_id"].removesuffix(f"-{self.uid}") for r in await self.stored()]

    async def save_position(self, name: str, window: int, position: StreamPosition) -> None:
        """A stored window (as an earlier run of the processor left it) holding ``position``."""
        event = TranscriptEvent(
            tenant=TENANT, stream_id=self.sid(name), window=window, start_s=0.0, end_s=1.0, text="before",
            segments=[], model="tiny.en", device="cpu", processing_ms=1.0, xrt=0.1,
        )  # fmt: skip
        unit = np.zeros(384, np.float32)
        unit[0] = 1.0
        stored = StoredWindow(event, 0, 0, position, unit, np.zeros((0, 384), np.float32))
        assert await self.store.save([stored]) == [None]


@asynccontextmanager
async def env(
    audio_db: Settings,
    whisper: Transcriber,
    embedder: TextEmbedder,
    *,
    clock: Clock | None = None,
    postgres_port: int | None = None,
    max_message_bytes: int | None = None,
    **asr: Any,
) -> AsyncIterator[Env]:
    settings = unique_settings(audio_db, **asr)
    if max_message_bytes is not None:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"max_message_bytes": max_message_bytes})}
        )
    topic = settings.kafka.topics.transcripts
    await ensure_topics(settings.kafka, [topic], partitions=1)
    postgres = settings.postgres
    if postgres_port is not None:
        postgres = postgres.model_copy(update={"host": "127.0.0.1", "port": postgres_port, "dsn": None})
    store = await TranscriptStore.open(postgres)
    producer = make_producer(settings.kafka)
    await producer.start()
    counted = Counted(whisper)
    sink = AudioSink(settings, counted, embedder, store, producer, clock=clock or Clock())  # type: ignore[arg-type]
    try:
        yield Env(settings, counted, store, sink)
    finally:
        await producer.stop()
        await store.close()
        await delete_topics(settings.kafka, [topic])


def offsets(env: Env, rejections: list[Rejection[AudioChunk]]) -> list[tuple[str, int]]:
    return sorted((r.item.value.stream_id.removesuffix(f"-{env.uid}"), r.item.offset) for r in rejections)


async def test_open_window_holds_the_commit_until_it_is_stored(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    async with env(audio_db, whisper, embedder) as e:
        batch = e.items("s", [2.0, 2.0, 2.0, 0.0], eos=True)
        await e.sink.write(batch[:3])
        assert await e.sink.flush() == []
        assert e.sink.committable(TP, 3) == 0  # chunk 0 is in an open window
        assert e.whisper.calls == 0 and await e.stored() == []
        await e.sink.write(batch[3:])
        assert await e.sink.flush() == []
        assert e.sink.committable(TP, 4) == 4
        (row,) = await e.stored()
        assert (row["window_index"], row["start_s"], row["end_s"]) == (0, 0.0, pytest.approx(6.0))
        positions = await e.store.positions([(TENANT, e.sid("s"))])
        position = positions[(TENANT, e.sid("s"))]
        assert position.final and position.next_seq == 4
        assert await e.published_streams() == ["s"]


async def test_idle_stream_is_flushed_when_its_deadline_passes(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    clock = Clock()
    async with env(audio_db, whisper, embedder, clock=clock) as e:
        assert e.sink.next_deadline() is None
        await e.sink.write(e.items("s", [2.0]))
        deadline = e.sink.next_deadline()
        assert deadline == clock.now + audio_db.asr.idle_flush_s
        await e.sink.flush()
        assert await e.stored() == [] and e.whisper.calls == 0
        clock.now = deadline
        await e.sink.flush()
        (row,) = await e.stored()
        assert row["end_s"] == pytest.approx(2.0)
        assert e.sink.committable(TP, 1) == 1


async def test_a_postgres_outage_is_backpressure_and_the_retry_reuses_the_transcript(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    """A real outage: the connections to PostgreSQL are reset and the port refuses new ones."""
    proxy = CuttableProxy(audio_db.postgres.host, audio_db.postgres.port)
    await proxy.restore()
    try:
        async with env(audio_db, whisper, embedder, postgres_port=proxy.port) as e:
            batch = e.items("s", [2.0, 0.0], eos=True)
            await e.sink.write(batch)
            await proxy.cut()
            with pytest.raises(SinkBackpressureError):
                await e.sink.flush()
            assert e.sink.committable(TP, 2) == 0
            assert e.whisper.calls == 1 and await e.published() == []  # stored before published
            assert e.sink.next_deadline() is not None  # the outbox asks for a retry without new records
            await proxy.restore()
            for attempt in range(5):  # the pool may hand out a reset connection before a new one
                try:
                    await e.sink.write(e.items("s", [2.0, 0.0], eos=True))  # the runtime redelivers
                    await e.sink.flush()
                    break
                except SinkBackpressureError:
                    assert attempt < 4, "PostgreSQL is back but the sink still pushes back"
            assert e.whisper.calls == 1  # the retry reused the transcript
            assert await e.published_streams() == ["s"] and await e.stored_streams() == ["s"]
            assert e.sink.committable(TP, 2) == 2
    finally:
        await proxy.cut()


async def test_revoked_partitions_are_forgotten(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    async with env(audio_db, whisper, embedder) as e:
        await e.sink.write(e.items("s", [2.0, 2.0]))
        assert e.sink.committable(TP, 2) == 0
        e.sink.revoked([TP])
        assert e.sink.next_deadline() is None and e.sink.open_windows == 0
        # A stale position of the batch in flight never commits past what was dropped ...
        assert e.sink.committable(TP, 2) == 0
        # ... until the partition's records come again (the new assignment reads from the last commit).
        await e.sink.write(e.items("s", [2.0, 2.0]))
        await e.sink.flush()
        assert e.sink.committable(TP, 2) == 0
        e.sink.revoked([TP])
        await e.sink.write([])
        await e.sink.write(e.items("other", [1.0], first_offset=5, eos=True))
        await e.sink.flush()
        assert e.sink.committable(TP, 6) == 6
        assert await e.stored_streams() == ["other"] and e.whisper.calls == 1


async def test_a_stored_position_resumes_the_stream(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    async with env(audio_db, whisper, embedder) as e:
        await e.save_position("s", 2, StreamPosition(next_seq=2, skip=RATE, start_s=5.0, next_window=3))
        await e.sink.write(e.items("s", [2.0, 2.0, 3.0, 1.0, 0.0], eos=True))  # replayed from the start
        await e.sink.flush()
        rows = await e.stored()
        assert [r["window_index"] for r in rows] == [2, 3]  # numbering continues
        assert rows[1]["start_s"] == pytest.approx(5.0)
        assert rows[1]["end_s"] == pytest.approx(5.0 + 2.0 + 1.0)  # 2 s left of chunk 2, then chunk 3
        assert e.sink.stats["ignored"] == 0 and e.whisper.calls == 1


async def test_a_finished_stream_is_ignored_on_replay(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    async with env(audio_db, whisper, embedder) as e:
        await e.save_position("s", 0, StreamPosition(next_seq=3, next_window=1, final=True))
        await e.sink.write(e.items("s", [2.0, 2.0, 0.0], eos=True))
        await e.sink.flush()
        assert e.sink.stats["ignored"] == 3 and e.whisper.calls == 0 and e.sink.committable(TP, 3) == 3
        assert await e.published() == []


# --- poison windows: dead letters, and the stream goes on -----------------------------------------


async def test_a_window_whisper_cannot_transcribe_dead_letters_its_records_only(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    async with env(audio_db, whisper, embedder, window_s=4.0) as e:
        e.whisper.fail_at[0.0] = RuntimeError("whisper_full failed")
        await e.sink.write(e.items("s", [3.0, 3.0, 0.0], eos=True))  # window 0 is cut inside chunk 1
        rejected = await e.sink.flush()
        assert offsets(e, rejected) == [("s", 0), ("s", 1)]  # chunk 1 is cut: its head was in window 0
        assert all(r.reason.startswith(f"asr: window 0 of acme/{e.sid('s')} (0.0-") for r in rejected)
        assert "could not be transcribed: RuntimeError('whisper_full failed')" in rejected[0].reason
        assert rejected[0].item.raw == b"pcm0"  # the original bytes go to the dead-letter topic
        rows = await e.stored()  # the rest of the stream is transcribed
        assert [r["window_index"] for r in rows] == [1]
        assert await e.published_streams() == ["s"] and e.sink.committable(TP, 3) == 3
        assert e.sink.stats["refused_windows"] == 1


async def test_a_text_postgres_refuses_is_dead_lettered_and_never_published(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    async with env(audio_db, whisper, embedder) as e:
        batch = e.items("bad", [2.0, 0.0], eos=True) + e.items("good", [1.0, 0.0], eos=True, first_offset=2)
        await e.sink.write(batch)
        e.whisper.nul_size = 2 * RATE  # the bad stream's window: 2 s (the good one's is 1 s)
        rejected = await e.sink.flush()
        assert offsets(e, rejected) == [("bad", 0), ("bad", 1)]
        assert rejected[0].reason.startswith(f"postgres: window 0 of acme/{e.sid('bad')}")
        assert "0x00" in rejected[0].reason  # PostgreSQL's own words
        assert await e.stored_streams() == ["good"] and await e.published_streams() == ["good"]
        assert e.sink.committable(TP, 4) == 4


async def test_an_event_the_producer_refuses_as_too_large_is_dead_lettered(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    """The JFK window's event (its text, segments and cursor, ~740 bytes) is over the 600-byte limit; a
    window of silence (~450 bytes) is under it. Both are refused or taken by the real producer."""
    jfk = load_audio_file(jfk_wav(audio_db), max_s=audio_db.asr.max_stream_s).samples
    chunks = [jfk[i : i + 2 * RATE] for i in range(0, jfk.size, 2 * RATE)] + [np.zeros(0, np.float32)]
    async with env(audio_db, whisper, embedder, max_message_bytes=600) as e:
        huge = e.items("huge", audio=chunks, eos=True)
        await e.sink.write(huge + e.items("fine", [2.0, 0.0], eos=True, first_offset=len(huge)))
        rejected = await e.sink.flush()
        assert offsets(e, rejected) == [("huge", i) for i in range(len(huge))]
        assert "too large" in rejected[0].reason and "MessageSizeTooLargeError" in rejected[0].reason
        assert await e.stored_streams() == ["fine"]  # its staged row was rolled back
        assert await e.published_streams() == ["fine"]
        assert e.sink.committable(TP, len(huge) + 2) == len(huge) + 2
    # the same window with the default limit: it was the size, and the transcript is JFK's
    async with env(audio_db, whisper, embedder) as e:
        await e.sink.write(e.items("huge", audio=chunks, eos=True))
        assert await e.sink.flush() == []
        (event,) = await e.published()
        assert wer(JFK_TEXT, event.text) <= 0.10 and event.segments


# --- bounded memory -------------------------------------------------------------------------------


async def test_a_new_stream_over_the_open_stream_cap_is_dead_lettered(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    async with env(audio_db, whisper, embedder, max_open_streams=1) as e:
        await e.sink.write(e.items("a", [2.0]) + e.items("b", [2.0, 0.0], eos=True, first_offset=1))
        rejected = await e.sink.flush()
        assert offsets(e, rejected) == [("b", 1), ("b", 2)]
        assert rejected[0].reason.startswith("audio: too many open streams: 1 streams hold audio")
        assert e.sink.committable(TP, 3) == 0  # a's chunk is still held; b's records are done
        await e.sink.write(e.items("a", [0.0], eos=True, first_seq=1, first_offset=3))
        await e.sink.flush()
        assert await e.stored_streams() == ["a"] and e.sink.committable(TP, 4) == 4


async def test_an_expired_stream_is_freed_and_resumes_where_it_stood(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    clock = Clock()
    async with env(audio_db, whisper, embedder, clock=clock, idle_flush_s=2.0, stream_expiry_s=60.0) as e:
        await e.sink.write(e.items("s", [2.0]))
        clock.now += 2.0
        await e.sink.flush()  # idle window 0
        assert e.sink.open_windows == 1 and e.sink.next_deadline() == pytest.approx(clock.now + 58.0)
        clock.now += 58.0
        await e.sink.flush()
        assert e.sink.open_windows == 0 and e.sink.next_deadline() is None
        await e.sink.write(e.items("s", [2.0, 0.0], first_seq=1, first_offset=1, eos=True))
        await e.sink.flush()
        rows = await e.stored()
        assert [(r["window_index"], r["start_s"]) for r in rows] == [(0, 0.0), (1, pytest.approx(2.0))]
        position = (await e.store.positions([(TENANT, e.sid("s"))]))[(TENANT, e.sid("s"))]
        assert position.final and e.sink.committable(TP, 3) == 3 and e.sink.open_windows == 0


async def test_the_buffered_audio_cap_transcribes_early_instead_of_holding_more(
    audio_db: Settings, whisper: Transcriber, embedder: TextEmbedder
) -> None:
    async with env(audio_db, whisper, embedder, max_buffered_s=5.0) as e:
        await e.sink.write(e.items("a", [2.0, 2.0]) + e.items("b", [2.0], first_offset=2))
        await e.sink.flush()
        (row,) = await e.stored()
        assert row["stream_id"] == e.sid("a") and row["end_s"] == pytest.approx(4.0)
        assert e.sink.committable(TP, 3) == 2 and e.sink.assembler.buffered_s == pytest.approx(2.0)
