"""The transcription processor (``wavegraph run audio``): ``wavegraph.audio.v1`` → Whisper → transcripts.

Per record: headers and audio are validated and decoded to 16 kHz mono float32
(:mod:`~wavegraph.processors.audio.decoder`; bad audio becomes a dead letter with its reason). Per
stream: chunks are assembled in sequence order into windows of up to ``asr.window_s`` seconds (closed
on the end-of-stream marker, when full, or after ``asr.idle_flush_s`` without audio), transcribed in
the engine's worker pool, published to ``wavegraph.transcripts.v1`` and stored with their embeddings
in PostgreSQL (:mod:`~wavegraph.processors.audio.sink`). Offsets are committed only once every record
before them is transcribed, published and stored (the sink is a
:class:`~wavegraph.streams.sink.CommitGate`); a restart replays the open windows and resumes each
stream where its last stored window ended.

Memory is bounded per processor: at most ``asr.max_open_streams`` open streams and ``asr.max_buffered_s``
seconds of buffered audio, and a stream without new audio for ``asr.stream_expiry_s`` is freed (rules in
:mod:`~wavegraph.processors.asr.windows`). A chunk or window that cannot be processed (over a cap, a
window whisper cannot transcribe, a text PostgreSQL refuses) is dead-lettered with its reason and the
stream goes on; an outage of PostgreSQL or Kafka is backpressure (the table of which is which is in
:mod:`~wavegraph.processors.audio.sink`).

Clients live in one ``AsyncExitStack`` and close in reverse order: the processor's consumer and
dead-letter producer, the transcript producer, the Whisper worker threads, the PostgreSQL pool.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from wavegraph.clients import make_admin, make_producer
from wavegraph.processors.asr.engine import Transcriber
from wavegraph.processors.audio.decoder import AudioDecoder
from wavegraph.processors.audio.sink import AudioSink
from wavegraph.processors.embed_text import Embedder, TextEmbedder
from wavegraph.settings import Settings
from wavegraph.sinks.transcripts import TranscriptStore
from wavegraph.streams.pipeline import run_pipeline
from wavegraph.streams.processor import default_group_id
from wavegraph.streams.transactions import TransactionalOutbox, transactional_id

log = logging.getLogger(__name__)

MAX_BATCH = 64
"""Records per batch: 64 two-second chunks are ~4 MB of PCM; a batch should not hold many windows."""


async def run_audio(
    settings: Settings,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    *,
    transcriber: Transcriber | None = None,
    embedder: Embedder | None = None,
) -> dict[str, int]:
    """Run the transcription processor until ``stop`` is set; return its counters.

    ``transcriber`` and ``embedder`` may be shared (the caller then closes the transcriber); by default
    they are built from ``settings`` (model loaded in every worker before consuming starts).
    """
    async with AsyncExitStack() as stack:
        store = await TranscriptStore.open(settings.postgres)  # first: a missing migration fails fast
        stack.push_async_callback(store.close)
        if transcriber is None:
            transcriber = await asyncio.to_thread(Transcriber, settings)  # verifies the model's sha256
            stack.callback(transcriber.close)
            await asyncio.to_thread(transcriber.warm_up)
        if embedder is None:
            embedder = await asyncio.to_thread(TextEmbedder)
        sink = await _sink(settings, stack, transcriber, embedder, store)
        log.info(
            "transcribing %s with Whisper %s on %s (batch %d)",
            settings.kafka.topics.audio,
            transcriber.model,
            transcriber.device,
            transcriber.batch_size,
        )
        stats = await run_pipeline(
            settings,
            "audio",
            [settings.kafka.topics.audio],
            AudioDecoder(settings),
            [sink],
            stop,
            started=started,
            max_batch=MAX_BATCH,
        )
        memory = sink.assembler.stats
        return {
            **stats,
            **sink.stats,
            "streams_expired": memory.expired,
            "streams_evicted": memory.evicted,
            "chunks_refused": memory.refused,
            "pressure_flushes": memory.pressure,
        }


async def _sink(
    settings: Settings,
    stack: AsyncExitStack,
    transcriber: Transcriber,
    embedder: Embedder,
    store: TranscriptStore,
) -> AudioSink:
    """The sink with its producer: transactional with the event outbox when ``kafka.exactly_once``."""
    kafka = settings.kafka
    if not kafka.exactly_once:
        producer = make_producer(kafka, client_id="wavegraph-audio-transcripts")
        await producer.start()
        stack.push_async_callback(producer.stop)
        return AudioSink(settings, transcriber, embedder, store, producer)
    group = default_group_id(settings, "audio")
    producer = make_producer(
        kafka,
        client_id="wavegraph-audio-transcripts",
        transactional_id=transactional_id(kafka, group, settings.runtime.instance),
    )
    await producer.start()  # fences (aborts) the open transaction of the worker this one replaces
    stack.push_async_callback(producer.stop)
    admin = make_admin(kafka)
    await admin.start()
    stack.push_async_callback(admin.close)

    async def committed(partitions: list[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        return await admin.list_consumer_group_offsets(group, partitions=partitions)

    outbox = TransactionalOutbox(producer, store.outbox(), committed, group)
    return AudioSink(settings, transcriber, embedder, store, None, outbox=outbox)
