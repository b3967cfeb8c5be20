"""The transcription sink: audio chunks → windows → Whisper → transcript events + PostgreSQL rows.

``write`` feeds each chunk to the sink's :class:`WindowAssembler` (one for all partitions, so its caps
``asr.max_open_streams`` and ``asr.max_buffered_s`` hold per processor; a stream is identified by its
partition and ``tenant/stream_id``); every window that closes (full 30 s, end of stream, a gap, memory
pressure) joins the outbox. ``flush`` also closes windows of streams idle for ``asr.idle_flush_s`` and
frees streams without new audio for ``asr.stream_expiry_s``, then, for the whole outbox: transcribes the
windows in the engine's worker pool (at most ``batch_size`` in flight, the event loop stays free), embeds
their text and segments, writes them in one PostgreSQL transaction, publishes one
:class:`TranscriptEvent` per window (acknowledged by the broker) and only then commits the transaction.
Only then does ``flush`` return.

A window spans many records, so records whose audio is still in an open window are not done when
their batch is flushed: :meth:`AudioSink.committable` holds a partition's commit back to the first
such record (it is a :class:`wavegraph.streams.sink.CommitGate`). After a restart they
are replayed, and the position stored with each window (:mod:`~wavegraph.processors.audio.cursor`)
makes the replay skip what was transcribed and re-assemble the open windows exactly.

**Failures.** Every exception the sink can see is either an *outage* (raised as
:class:`SinkBackpressureError`: nothing is committed, transcripts already made wait in the outbox and
are reused by the retry) or a *data error* of one record or window (a :class:`Rejection` of every record
involved, with its reason, returned by ``flush``; the stream goes on):

=============================  ==========================================  ===========================
step                           data error → dead letter (reason prefix)    outage → backpressure
=============================  ==========================================  ===========================
assemble a chunk               ``InvalidEvent``: over ``asr.max_stream_s``,  —
                               one stream over ``asr.max_open_streams``
                               (``audio:``), the chunk's record
look up stored positions       ``transcript_store.DATA_ERRORS`` (tried       ``transcript_store.OUTAGES``
                               stream by stream; ``postgres:``)
transcribe a window            any other exception of whisper for it         ``MissingPrerequisite``,
                               (``InvalidEvent``, ``RuntimeError``, ...;     ``ModelCorrupt``,
                               ``asr:``)                                     ``MemoryError``,
                                                                             ``BrokenExecutor``
build its event                ``ValueError``/``TypeError`` (pydantic,       —
                               orjson: e.g. a lone surrogate; ``transcript:``)
embed its texts                any other exception of the embedder for the   ``MissingPrerequisite``,
                               window alone (``embedding:``)                 ``MemoryError``
store it                       ``transcript_store.DATA_ERRORS``: a NUL in a  ``transcript_store.OUTAGES``
                               text, a NaN or wrong-sized vector (window by
                               window; ``postgres:``)
publish it                     ``MessageSizeTooLargeError``,                 every other ``KafkaError``,
                               ``RecordTooLargeError`` (``kafka:``)          ``OSError``
=============================  ==========================================  ===========================

Anything else is a bug in this package and propagates. A window's records are those it completes and
the one it cuts (whose rest is in the next window). Windows are written before they are published, so a
window PostgreSQL refuses is never published; a published window's transaction commits after the
broker's ack (a commit lost to an outage republishes it on retry: at-least-once).

**Exactly once** (``kafka.exactly_once``, the default of ``wavegraph run audio``). With an ``outbox``
(:class:`~wavegraph.streams.transactions.TransactionalOutbox`) the sink publishes nothing itself: each
window's event is staged in the PostgreSQL outbox in the window's own transaction, and the runtime's
commit (:meth:`AudioSink.commit_offsets`) publishes the staged events in one Kafka transaction with the
consumed offsets. A ``read_committed`` consumer of the transcript topic then sees each window exactly
once, across SIGKILLs and restarts (the table of crash points is in
:mod:`~wavegraph.streams.transactions`); an event too large for ``kafka.max_message_bytes`` is refused
before it is staged, since a staged event must be publishable. Without it, ``producer`` publishes each
window between the PostgreSQL write and its commit (at-least-once).

**Revocation.** :meth:`AudioSink.revoked` may be called while a ``flush`` is still running (the runtime
calls it from the rebalance callback when the batch in flight outlives the commit deadline). It drops the
partitions' assembler state, outbox windows and pending dead letters at once, and ownership is checked
again right before each irrevocable step of the running flush (starting a transcription, handing an
event to the producer, committing the PostgreSQL transaction; a transaction that holds a revoked window
is rolled back and the others written again), so after ``revoked`` returns no event is published and no
row is committed for those partitions (an event already handed to the producer cannot be recalled). Until
a later ``write`` brings the partition's records again, :meth:`AudioSink.committable` stays at the first
record that was dropped, so a stale position of the batch in flight is never committed past them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from wavegraph.errors import InvalidEvent, MissingPrerequisite, ModelCorrupt, SinkBackpressureError
from wavegraph.events import Segment, TranscriptEvent, WindowCursor, encode
from wavegraph.processors.asr.engine import Transcriber, Transcript
from wavegraph.processors.asr.windows import Window, WindowAssembler
from wavegraph.processors.audio.cursor import (
    ChunkRef,
    StreamPosition,
    advance,
    window_records,
    window_refs,
)
from wavegraph.processors.audio.decoder import AudioChunk
from wavegraph.processors.embed_text import Embedder
from wavegraph.settings import Settings
from wavegraph.sinks.transcripts import (
    DATA_ERRORS,
    OUTAGES,
    StagedWrite,
    StoredWindow,
    TranscriptStore,
)
from wavegraph.streams.sink import Item, Rejection
from wavegraph.streams.transactions import OutboxRow, TransactionalOutbox

log = logging.getLogger(__name__)

_ASR_OUTAGES = (MissingPrerequisite, ModelCorrupt, MemoryError, BrokenExecutor)
_EMBED_OUTAGES = (MissingPrerequisite, MemoryError)
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


@dataclass
class _Stream:
    tp: TopicPartition
    tenant: str
    stream_id: str
    position: StreamPosition
    """After the last window closed in memory (stored, in the outbox or dead-lettered)."""
    resume_skip: tuple[int, int] | None = None
    """``(seq, samples)`` to cut from the first chunk replayed after a restart."""


@dataclass
class _Job:
    tp: TopicPartition
    epoch: int
    key: str
    stream: _Stream
    window: Window
    index: int
    position: StreamPosition
    transcript: Transcript | None = None
    event: TranscriptEvent | None = None
    payload: bytes = b""
    vectors: np.ndarray | None = field(default=None, repr=False)
    published: bool = False
    done: bool = False
    """Stored, or dead-lettered."""

    def describe(self) -> str:
        w, s = self.window, self.stream
        return (
            f"window {self.index} of {s.tenant}/{s.stream_id} ({w.start_s:.1f}-{w.end_s:.1f} s, "
            f"seq {w.first_seq}-{w.last_seq})"
        )


@dataclass(frozen=True)
class _Pending:
    tp: TopicPartition
    epoch: int
    rejection: Rejection[AudioChunk]


class AudioSink:
    """``Sink[AudioChunk]`` with a commit gate; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        transcriber: Transcriber,
        embedder: Embedder,
        store: TranscriptStore,
        producer: AIOKafkaProducer | None,
        *,
        outbox: TransactionalOutbox | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``outbox``: exactly-once mode (events staged with the rows, published with the offsets in a
        Kafka transaction, see "Exactly once"); without it ``producer`` publishes each window between
        the PostgreSQL write and its commit (at-least-once)."""
        if (producer is None) == (outbox is None):
            raise ValueError("give the sink a producer (at-least-once) or an outbox (exactly-once)")
        self.settings = settings
        self.topic = settings.kafka.topics.transcripts
        self.retry_after = settings.runtime.default_retry_after_s
        self._transcriber = transcriber
        self._embedder = embedder
        self._store = store
        self._producer = producer
        self._outbox = outbox
        self._max_event_bytes = settings.kafka.max_message_bytes - 1024  # room for key and framing
        self._clock = clock
        self._assembler = WindowAssembler.from_settings(settings.asr, clock=clock)
        self._streams: dict[str, _Stream] = {}
        self._jobs: list[_Job] = []
        self._rejected: list[_Pending] = []
        self._epochs: dict[TopicPartition, int] = {}
        self._floors: dict[TopicPartition, int] = {}
        self.stats = {"windows": 0, "published": 0, "stored": 0, "ignored": 0, "refused_windows": 0}

    # --- the Sink contract -----------------------------------------------------------------------
    async def write(self, batch: list[Item[AudioChunk]]) -> None:
        epochs = dict(self._epochs)
        partitions = {TopicPartition(i.topic, i.partition) for i in batch}
        for tp in partitions:
            self._floors.pop(tp, None)  # its records come again, from the last commit
        if self._outbox is not None:
            await self._recover(partitions)
        refused = await self._learn_streams(batch, epochs)
        for item in batch:
            tp = TopicPartition(item.topic, item.partition)
            if self._epochs.get(tp, 0) != epochs.get(tp, 0):  # revoked while we waited
                self._lower_floor(tp, item.offset)
                continue
            chunk = item.value
            key = _key(tp, chunk)
            stream = self._streams.get(key)
            if stream is None:
                self._reject(tp, item, refused.get(key, "postgres: stream position unavailable"))
                continue
            if stream.position.final:
                self.stats["ignored"] += 1
                continue
            if not self._assembler.is_open(key):  # new, expired or evicted: continue where it stands
                self._assembler.resume(key, stream.position.next_seq, stream.position.start_s, group=tp)
            samples = chunk.samples
            if stream.resume_skip is not None and stream.resume_skip[0] == chunk.seq:
                samples = samples[stream.resume_skip[1] :]
                stream.resume_skip = None
            ref = ChunkRef(item.partition, item.offset, chunk.seq, chunk.samples.size, item=item)
            try:
                windows = self._assembler.add(
                    key, chunk.seq, samples, end_of_stream=chunk.eos, ref=ref, group=tp
                )
            except InvalidEvent as exc:  # over asr.max_stream_s, or too many open streams
                self._reject(tp, item, exc.reason)
                continue
            self._enqueue(windows)

    async def flush(self) -> list[Rejection[AudioChunk]]:
        self._enqueue(self._assembler.poll())
        if self._jobs:
            await self._complete()
        self._forget_closed_streams()
        pending, self._rejected = self._rejected, []
        return [p.rejection for p in pending if self._owned(p.tp, p.epoch)]

    # --- the commit gate ---------------------------------------------------------------------------
    def committable(self, tp: TopicPartition, offset: int) -> int:
        """``offset``, or the offset of the first record of ``tp`` whose audio is not yet stored."""
        held = [r.offset for r in self._held_refs(tp)]
        floor = self._floors.get(tp)
        if floor is not None:
            held.append(floor)
        return min(offset, *held) if held else offset

    def next_deadline(self) -> float | None:
        """``time.monotonic()`` time at which :meth:`flush` has work without new records (None: none)."""
        if self._jobs:
            return self._clock()
        return self._assembler.next_deadline()

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Forget what was held for ``partitions``: their new owner replays it from the last commit.

        Safe while a ``flush`` runs: see "Revocation" in the module docstring.
        """
        gone = set(partitions)
        for tp in gone:
            dropped = [r.offset for r in self._held_refs(tp)]
            dropped += [p.rejection.item.offset for p in self._rejected if p.tp == tp]
            if dropped:
                self._lower_floor(tp, min(dropped))
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
            self._assembler.discard(tp)
        self._streams = {k: v for k, v in self._streams.items() if v.tp not in gone}
        self._jobs = [j for j in self._jobs if j.tp not in gone]
        self._rejected = [p for p in self._rejected if p.tp not in gone]
        if self._outbox is not None:
            self._outbox.revoked(partitions)

    # --- exactly once (the runtime's TransactionalCommit) -------------------------------------------
    @property
    def transactional(self) -> bool:
        return self._outbox is not None

    def owes(self, tp: TopicPartition | None = None) -> bool:
        if self._outbox is None:
            return False
        return self._outbox.owes(tp) if tp is not None else self._outbox.owed() > 0

    async def commit_offsets(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Publish the stored windows' events with ``offsets`` in one Kafka transaction."""
        assert self._outbox is not None
        return await self._outbox.commit(offsets)

    async def _recover(self, partitions: set[TopicPartition]) -> None:
        assert self._outbox is not None
        new = [tp for tp in partitions if not self._outbox.knows(tp)]
        if not new:
            return
        try:
            await self._outbox.recover(new)
        except (*OUTAGES, KafkaError) as exc:
            raise SinkBackpressureError(self.retry_after, f"outbox recovery: {exc!r}") from exc

    @property
    def open_windows(self) -> int:
        return self._assembler.open_streams

    @property
    def assembler(self) -> WindowAssembler:
        return self._assembler

    # --- bookkeeping -------------------------------------------------------------------------------
    def _owned(self, tp: TopicPartition, epoch: int) -> bool:
        return self._epochs.get(tp, 0) == epoch

    def _job_owned(self, job: _Job) -> bool:
        return not job.done and self._owned(job.tp, job.epoch)

    def _lower_floor(self, tp: TopicPartition, offset: int) -> None:
        self._floors[tp] = min(offset, self._floors.get(tp, offset))

    def _reject(self, tp: TopicPartition, item: Item[AudioChunk], reason: str) -> None:
        epoch = self._epochs.get(tp, 0)
        self._rejected.append(_Pending(tp, epoch, Rejection(item=item, reason=reason)))

    def _refuse(self, job: _Job, reason: str) -> None:
        """Dead-letter every record with audio in ``job``'s window; the stream goes on."""
        log.warning("dead-lettering the records of a window: %s", reason)
        job.done = True
        self.stats["refused_windows"] += 1
        for ref in window_records(job.window):
            if ref.item is not None:
                self._rejected.append(_Pending(job.tp, job.epoch, Rejection(item=ref.item, reason=reason)))

    def _held_refs(self, tp: TopicPartition) -> list[ChunkRef]:
        refs = [r for r in self._assembler.pending_refs(group=tp) if isinstance(r, ChunkRef)]
        for job in self._jobs:
            if job.tp == tp and not job.done:
                refs += window_refs(job.window)
        return refs

    def _forget_closed_streams(self) -> None:
        """Free what is kept for streams the assembler closed once none of their windows is pending."""
        busy = {j.key for j in self._jobs}
        for key in [k for k in self._streams if k not in busy and not self._assembler.is_open(k)]:
            del self._streams[key]

    async def _learn_streams(
        self, batch: list[Item[AudioChunk]], epochs: dict[TopicPartition, int]
    ) -> dict[str, str]:
        """Load the stored position of every stream this sink has no state for (after a restart).

        Returns the streams whose position PostgreSQL refused to look up, with the reason.
        """
        new: dict[str, tuple[TopicPartition, str, str]] = {}
        for item in batch:
            tp = TopicPartition(item.topic, item.partition)
            key = _key(tp, item.value)
            if key not in self._streams:
                new[key] = (tp, item.value.tenant, item.value.stream_id)
        if not new:
            return {}
        names = sorted({(tenant, stream_id) for _, tenant, stream_id in new.values()})
        stored, refused = await self._positions(names)
        out: dict[str, str] = {}
        for key, (tp, tenant, stream_id) in new.items():
            if self._epochs.get(tp, 0) != epochs.get(tp, 0) or key in self._streams:
                continue
            if (tenant, stream_id) in refused:
                out[key] = refused[(tenant, stream_id)]
                continue
            position = stored.get((tenant, stream_id), StreamPosition())
            stream = _Stream(tp, tenant, stream_id, position)
            if (tenant, stream_id) in stored and not position.final and position.skip:
                stream.resume_skip = (position.next_seq, position.skip)
            self._streams[key] = stream
        return out

    async def _positions(
        self, names: list[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], StreamPosition], dict[tuple[str, str], str]]:
        try:
            try:
                return await self._store.positions(names), {}
            except DATA_ERRORS:
                if len(names) == 1:
                    raise
            stored: dict[tuple[str, str], StreamPosition] = {}
            refused: dict[tuple[str, str], str] = {}
            for name in names:
                try:
                    stored.update(await self._store.positions([name]))
                except DATA_ERRORS as exc:
                    refused[name] = f"postgres: the stream's position cannot be looked up: {exc}"
            return stored, refused
        except DATA_ERRORS as exc:
            return {}, {names[0]: f"postgres: the stream's position cannot be looked up: {exc}"}
        except OUTAGES as exc:
            raise SinkBackpressureError(self.retry_after, f"PostgreSQL: {exc!r}") from exc

    def _enqueue(self, windows: list[Window]) -> None:
        # No await in here: a window leaves the assembler's pending refs and joins the outbox at once.
        for window in windows:
            stream = self._streams[window.stream_id]
            counted = window.samples.size > 0
            position = advance(stream.position, window, counted=counted)
            if counted:
                epoch = self._epochs.get(stream.tp, 0)
                index = stream.position.next_window
                self._jobs.append(_Job(stream.tp, epoch, window.stream_id, stream, window, index, position))
                self.stats["windows"] += 1
            stream.position = position

    # --- transcribe, embed, store, publish ---------------------------------------------------------
    async def _complete(self) -> None:
        """Transcribe, embed, store and publish the outbox; an outage becomes backpressure."""
        jobs = [j for j in self._jobs if self._job_owned(j)]
        try:
            await self._transcribe([j for j in jobs if j.transcript is None])
            self._build([j for j in jobs if self._job_owned(j) and j.event is None])
            await self._embed([j for j in jobs if self._job_owned(j) and j.vectors is None])
            await self._store_and_publish(jobs)
        except (*OUTAGES, KafkaError) as exc:
            raise SinkBackpressureError(self.retry_after, f"audio sink: {exc!r}") from exc
        finally:
            self._jobs = [j for j in self._jobs if not j.done]

    async def _transcribe(self, jobs: list[_Job]) -> None:
        limit = asyncio.Semaphore(self._transcriber.batch_size)
        outages: list[BaseException] = []

        async def one(job: _Job) -> None:
            async with limit:
                if not self._job_owned(job):  # revoked while it waited for a worker
                    return
                try:
                    job.transcript = await self._transcriber.transcribe(
                        job.window.samples, start_s=job.window.start_s
                    )
                except _ASR_OUTAGES as exc:
                    outages.append(exc)
                except Exception as exc:  # whisper cannot transcribe this window
                    self._refuse(job, f"asr: {job.describe()} could not be transcribed: {exc!r}")

        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(one(job))
        if outages:
            raise SinkBackpressureError(self.retry_after, f"whisper: {outages[0]!r}") from outages[0]

    def _build(self, jobs: list[_Job]) -> None:
        for job in jobs:
            t, w = job.transcript, job.window
            assert t is not None
            try:
                job.event = TranscriptEvent(
                    tenant=job.stream.tenant,
                    stream_id=job.stream.stream_id,
                    window=job.index,
                    start_s=w.start_s,
                    end_s=w.end_s,
                    text=t.text,
                    segments=[Segment(start_s=s.start_s, end_s=s.end_s, text=s.text) for s in t.segments],
                    model=t.model,
                    device=t.device,
                    processing_ms=t.processing_ms,
                    xrt=t.xrt,
                    cursor=_cursor(job),
                )
                job.payload = encode(job.event)
                if self._outbox is not None and len(job.payload) > self._max_event_bytes:
                    # Checked here, not left to the producer: a staged event must be publishable.
                    raise ValueError(
                        f"the event has {len(job.payload)} bytes, over kafka.max_message_bytes less framing"
                    )
            except (ValueError, TypeError) as exc:  # pydantic's ValidationError, orjson's JSONEncodeError
                job.event = None
                self._refuse(job, f"transcript: {job.describe()} makes no valid event: {exc}")

    async def _embed(self, jobs: list[_Job]) -> None:
        """Embed each window's text and segments; a batch that fails is retried window by window."""
        if not jobs:
            return
        try:
            await asyncio.to_thread(self._embed_jobs, jobs)
            return
        except _EMBED_OUTAGES as exc:
            raise SinkBackpressureError(self.retry_after, f"embedder: {exc!r}") from exc
        except Exception as exc:
            if len(jobs) == 1:
                self._refuse(jobs[0], f"embedding: {jobs[0].describe()} cannot be embedded: {exc!r}")
                return
        for job in jobs:
            try:
                await asyncio.to_thread(self._embed_jobs, [job])
            except _EMBED_OUTAGES as exc:
                raise SinkBackpressureError(self.retry_after, f"embedder: {exc!r}") from exc
            except Exception as exc:
                self._refuse(job, f"embedding: {job.describe()} cannot be embedded: {exc!r}")

    def _embed_jobs(self, jobs: list[_Job]) -> None:
        texts: list[str] = []
        for job in jobs:
            assert job.transcript is not None
            texts += [job.transcript.text, *(s.text for s in job.transcript.segments)]
        vectors = np.asarray(self._embedder.embed(texts))
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ValueError(f"the embedder returned shape {vectors.shape} for {len(texts)} texts")
        start = 0
        for job in jobs:
            assert job.transcript is not None
            n = 1 + len(job.transcript.segments)
            job.vectors = vectors[start : start + n]
            start += n

    async def _store_and_publish(self, jobs: list[_Job]) -> None:
        """Write the windows in one transaction, publish them, commit; see the module docstring."""
        while True:
            jobs = [j for j in jobs if self._job_owned(j)]
            if not jobs:
                return
            async with self._store.transaction() as tx:
                refused = await tx.write([self._stored(j) for j in jobs])
                staged: list[_Job] = []
                for job, reason in zip(jobs, refused, strict=True):
                    if reason is None:
                        staged.append(job)
                    else:
                        self._refuse(job, f"postgres: {job.describe()} was refused: {reason}")
                outbox = self._outbox
                owed: dict[TopicPartition, list[OutboxRow]] = {}
                if outbox is not None:
                    owed = await self._stage_events(tx, staged)
                else:
                    await self._publish([j for j in staged if not j.published])
                if all(self._job_owned(j) for j in staged):  # no await between this and the commit
                    await tx.commit()
                    for job in staged:
                        job.done = True
                    if outbox is not None:
                        for tp, rows in owed.items():
                            outbox.owe(tp, rows)
                    self.stats["stored"] += len(staged)
                    return
            # a staged window was revoked or refused by the broker meanwhile: write the rest again

    async def _stage_events(self, tx: StagedWrite, jobs: list[_Job]) -> dict[TopicPartition, list[OutboxRow]]:
        """Stage each window's event in the outbox, in the windows' transaction (exactly-once mode)."""
        assert self._outbox is not None
        by_tp: dict[TopicPartition, list[_Job]] = {}
        for job in jobs:
            by_tp.setdefault(job.tp, []).append(job)
        owed: dict[TopicPartition, list[OutboxRow]] = {}
        for tp, group in by_tp.items():
            seqs = self._outbox.reserve(tp, len(group))
            owed[tp] = [
                OutboxRow(seq, self.topic, _event_key(job), job.payload)
                for seq, job in zip(seqs, group, strict=True)
            ]
            await tx.stage_events(self._outbox.group, tp, owed[tp])
        for job in jobs:
            job.published = True  # handed over: the transaction of the next commit publishes it
        self.stats["published"] += len(jobs)
        return owed

    async def _publish(self, jobs: list[_Job]) -> None:
        sent: list[tuple[_Job, asyncio.Future[Any]]] = []
        failure: Exception | None = None
        for job in jobs:
            if not self._job_owned(job):  # checked right before the event leaves the process
                continue
            assert self._producer is not None
            try:
                future = await self._producer.send(self.topic, value=job.payload, key=_event_key(job))
                sent.append((job, future))
            except _TOO_LARGE as exc:
                self._refuse(job, f"kafka: {job.describe()}: the event is too large: {exc!r}")
            except KafkaError as exc:
                failure = exc
                break
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        for (job, _), result in zip(sent, results, strict=True):
            if isinstance(result, _TOO_LARGE):
                self._refuse(job, f"kafka: {job.describe()}: the event is too large: {result!r}")
            elif isinstance(result, BaseException):  # a send cancelled by a stopping producer too
                failure = failure or (result if isinstance(result, Exception) else KafkaError(repr(result)))
            else:
                job.published = True
                self.stats["published"] += 1
        if failure is not None:
            raise failure

    @staticmethod
    def _stored(job: _Job) -> StoredWindow:
        assert job.vectors is not None and job.event is not None
        return StoredWindow(
            event=job.event,
            first_seq=job.window.first_seq,
            last_seq=job.window.last_seq,
            position=job.position,
            embedding=job.vectors[0],
            segment_embeddings=job.vectors[1:],
        )


def _cursor(job: _Job) -> WindowCursor:
    """What :meth:`StoredWindow.metadata` stores beyond the event, carried in it for the replay."""
    p = job.position
    return WindowCursor(
        first_seq=int(job.window.first_seq),
        last_seq=int(job.window.last_seq),
        next_seq=int(p.next_seq),
        skip=int(p.skip),
        start_s=float(p.start_s),
        next_window=int(p.next_window),
        final=bool(p.final),
    )


def _event_key(job: _Job) -> bytes:
    """A transcript event's record key: its stream, so a stream's windows stay in order."""
    return f"{job.stream.tenant}/{job.stream.stream_id}".encode()


def _key(tp: TopicPartition, chunk: AudioChunk) -> str:
    """The assembler's id of a stream: ``tenant/stream_id`` on one partition."""
    return f"{chunk.stream_key} ({tp.topic}/{tp.partition})"
