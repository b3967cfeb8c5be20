"""The transcription sink: audio chunks → windows → Whisper → transcript events + PostgreSQL rows.

``write`` feeds each chunk to its partition's :class:`WindowAssembler` (a stream stays on one
partition); every window that closes (full 30 s, end of stream, a gap) joins the outbox. ``flush``
also closes windows of streams idle for ``asr.idle_flush_s``, then, for the whole outbox: transcribes
the windows in the engine's worker pool (at most ``batch_size`` in flight, the event loop stays free),
embeds their text and segments, publishes one :class:`TranscriptEvent` per window (acknowledged by the
broker) and stores them in one transaction. Only then does ``flush`` return.

A window spans many records, so records whose audio is still in an open window are not done when
their batch is flushed: :meth:`AudioSink.committable` holds a partition's commit back to the first
such record (it is a :class:`wavegraph.streams.sink.CommitGate`). After a restart they
are replayed, and the position stored with each window (:mod:`~wavegraph.processors.stream_cursor`)
makes the replay skip what was transcribed and re-assemble the open windows exactly.

A PostgreSQL or Kafka outage raises :class:`SinkBackpressureError`; transcripts already made wait in the
outbox (their records stay uncommitted) and are published and stored on the next flush.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import numpy as np
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from wavegraph.errors import InvalidEvent, SinkBackpressureError
from wavegraph.events import Segment, TranscriptEvent, encode
from wavegraph.processors.asr.engine import Transcriber, Transcript
from wavegraph.processors.asr.windows import Window, WindowAssembler
from wavegraph.processors.audio_chunks import AudioChunk
from wavegraph.processors.stream_cursor import ChunkRef, StreamPosition, advance, window_refs
from wavegraph.processors.transcript_store import StoredWindow, TranscriptStore
from wavegraph.settings import Settings
from wavegraph.streams.sink import Item, Rejection

_OUTAGES = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, KafkaError)


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class _Stream:
    tenant: str
    stream_id: str
    position: StreamPosition
    """After the last window closed in memory (stored or in the outbox)."""
    resume_skip: tuple[int, int] | None = None
    """``(seq, samples)`` to cut from the first chunk replayed after a restart."""


@dataclass
class _Job:
    tp: TopicPartition
    stream: _Stream
    window: Window
    index: int
    position: StreamPosition
    transcript: Transcript | None = None
    published: bool = False
    vectors: np.ndarray | None = field(default=None, repr=False)

    def event(self) -> TranscriptEvent:
        t, w = self.transcript, self.window
        assert t is not None
        return TranscriptEvent(
            tenant=self.stream.tenant,
            stream_id=self.stream.stream_id,
            window=self.index,
            start_s=w.start_s,
            end_s=w.end_s,
            text=t.text,
            segments=[Segment(start_s=s.start_s, end_s=s.end_s, text=s.text) for s in t.segments],
            model=t.model,
            device=t.device,
            processing_ms=t.processing_ms,
            xrt=t.xrt,
        )


class AudioSink:
    """``Sink[AudioChunk]`` with a commit gate; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        transcriber: Transcriber,
        embedder: Embedder,
        store: TranscriptStore,
        producer: AIOKafkaProducer,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topic = settings.kafka.topics.transcripts
        self.retry_after = settings.runtime.default_retry_after_s
        self._transcriber = transcriber
        self._embedder = embedder
        self._store = store
        self._producer = producer
        self._clock = clock
        self._assemblers: dict[TopicPartition, WindowAssembler] = {}
        self._streams: dict[tuple[TopicPartition, str], _Stream] = {}
        self._outbox: list[_Job] = []
        self._rejected: list[Rejection[AudioChunk]] = []
        self.stats = {"windows": 0, "published": 0, "stored": 0, "ignored": 0}

    # --- the Sink contract -----------------------------------------------------------------------
    async def write(self, batch: list[Item[AudioChunk]]) -> None:
        await self._learn_streams(batch)
        for item in batch:
            tp = TopicPartition(item.topic, item.partition)
            chunk = item.value
            stream = self._streams[(tp, chunk.stream_key)]
            if stream.position.final:
                self.stats["ignored"] += 1
                continue
            samples = chunk.samples
            if stream.resume_skip is not None and stream.resume_skip[0] == chunk.seq:
                samples = samples[stream.resume_skip[1] :]
                stream.resume_skip = None
            ref = ChunkRef(item.partition, item.offset, chunk.seq, chunk.samples.size)
            try:
                windows = self._assembler(tp).add(
                    chunk.stream_key, chunk.seq, samples, end_of_stream=chunk.eos, ref=ref
                )
            except InvalidEvent as exc:  # the stream would exceed asr.max_stream_s
                self._rejected.append(Rejection(item, exc.reason))
                continue
            self._enqueue(tp, windows)

    async def flush(self) -> list[Rejection[AudioChunk]]:
        for tp, assembler in list(self._assemblers.items()):
            self._enqueue(tp, assembler.poll())
        if self._outbox:
            await self._complete(self._outbox)
            for job in self._outbox:
                if job.position.final:
                    self._streams.pop((job.tp, f"{job.stream.tenant}/{job.stream.stream_id}"), None)
            self._outbox = []
        rejected, self._rejected = self._rejected, []
        return rejected

    # --- the commit gate ---------------------------------------------------------------------------
    def committable(self, tp: TopicPartition, offset: int) -> int:
        """``offset``, or the offset of the first record of ``tp`` whose audio is not yet stored."""
        held = [r.offset for r in self._held_refs(tp)]
        return min(offset, *held) if held else offset

    def next_deadline(self) -> float | None:
        """``time.monotonic()`` time at which :meth:`flush` has work without new records (None: none)."""
        if self._outbox:
            return self._clock()
        deadlines = [d for a in self._assemblers.values() if (d := a.next_deadline()) is not None]
        return min(deadlines, default=None)

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Forget what was held for ``partitions``: their new owner replays it from the last commit."""
        gone = set(partitions)
        for tp in gone:
            self._assemblers.pop(tp, None)
        self._streams = {k: v for k, v in self._streams.items() if k[0] not in gone}
        self._outbox = [j for j in self._outbox if j.tp not in gone]
        self._rejected = [
            r for r in self._rejected if TopicPartition(r.item.topic, r.item.partition) not in gone
        ]

    @property
    def open_windows(self) -> int:
        return sum(a.open_streams for a in self._assemblers.values())

    # --- internals ---------------------------------------------------------------------------------
    def _assembler(self, tp: TopicPartition) -> WindowAssembler:
        assembler = self._assemblers.get(tp)
        if assembler is None:
            assembler = WindowAssembler.from_settings(self.settings.asr, clock=self._clock)
            self._assemblers[tp] = assembler
        return assembler

    def _held_refs(self, tp: TopicPartition) -> list[ChunkRef]:
        assembler = self._assemblers.get(tp)
        refs = [r for r in assembler.pending_refs() if isinstance(r, ChunkRef)] if assembler else []
        for job in self._outbox:
            if job.tp == tp:
                refs += window_refs(job.window)
        return refs

    async def _learn_streams(self, batch: list[Item[AudioChunk]]) -> None:
        """Load the stored position of every stream this sink has no state for (after a restart)."""
        new: dict[tuple[TopicPartition, str], tuple[str, str]] = {}
        for item in batch:
            key = (TopicPartition(item.topic, item.partition), item.value.stream_key)
            if key not in self._streams:
                new[key] = (item.value.tenant, item.value.stream_id)
        if not new:
            return
        try:
            stored = await self._store.positions(sorted(set(new.values())))
        except _OUTAGES as exc:
            raise SinkBackpressureError(self.retry_after, f"PostgreSQL: {exc}") from exc
        for (tp, stream_key), (tenant, stream_id) in new.items():
            position = stored.get((tenant, stream_id), StreamPosition())
            stream = _Stream(tenant, stream_id, position)
            if (tenant, stream_id) in stored and not position.final:
                self._assembler(tp).resume(stream_key, position.next_seq, position.start_s)
                if position.skip:
                    stream.resume_skip = (position.next_seq, position.skip)
            self._streams[(tp, stream_key)] = stream

    def _enqueue(self, tp: TopicPartition, windows: list[Window]) -> None:
        # No await in here: a window leaves the assembler's pending refs and joins the outbox at once.
        for window in windows:
            stream = self._streams[(tp, window.stream_id)]
            counted = window.samples.size > 0
            position = advance(stream.position, window, counted=counted)
            if counted:
                self._outbox.append(_Job(tp, stream, window, stream.position.next_window, position))
                self.stats["windows"] += 1
            stream.position = position

    async def _complete(self, jobs: list[_Job]) -> None:
        """Transcribe, embed, publish and store ``jobs``; an outage becomes backpressure."""
        await self._transcribe([j for j in jobs if j.transcript is None])
        await asyncio.to_thread(self._embed, [j for j in jobs if j.vectors is None])
        try:
            await self._publish([j for j in jobs if not j.published])
            await self._store.save([self._stored(j) for j in jobs])
        except _OUTAGES as exc:
            raise SinkBackpressureError(self.retry_after, f"audio sink: {exc!r}") from exc
        self.stats["stored"] += len(jobs)

    async def _transcribe(self, jobs: list[_Job]) -> None:
        limit = asyncio.Semaphore(self._transcriber.batch_size)

        async def one(job: _Job) -> None:
            async with limit:
                job.transcript = await self._transcriber.transcribe(
                    job.window.samples, start_s=job.window.start_s
                )

        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(one(job))

    def _embed(self, jobs: list[_Job]) -> None:
        texts: list[str] = []
        for job in jobs:
            assert job.transcript is not None
            texts += [job.transcript.text, *(s.text for s in job.transcript.segments)]
        vectors = self._embedder.embed(texts)
        start = 0
        for job in jobs:
            assert job.transcript is not None
            n = 1 + len(job.transcript.segments)
            job.vectors = vectors[start : start + n]
            start += n

    async def _publish(self, jobs: list[_Job]) -> None:
        futures = []
        for job in jobs:
            event = job.event()
            key = f"{event.tenant}/{event.stream_id}".encode()
            futures.append(await self._producer.send(self.topic, value=encode(event), key=key))
        await asyncio.gather(*futures)  # every transcript acknowledged before it is stored
        for job in jobs:
            job.published = True
        self.stats["published"] += len(jobs)

    @staticmethod
    def _stored(job: _Job) -> StoredWindow:
        assert job.vectors is not None
        return StoredWindow(
            event=job.event(),
            first_seq=job.window.first_seq,
            last_seq=job.window.last_seq,
            position=job.position,
            embedding=job.vectors[0],
            segment_embeddings=job.vectors[1:],
        )
