"""Helpers for the audio tests: unique topics, audio records, reading topics back, running the processor."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import uuid
import wave
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from pgvector.asyncpg import register_vector

from wavegraph.clients import make_producer
from wavegraph.processors.audio.pipeline import run_audio
from wavegraph.processors.embed_text import Embedder
from wavegraph.settings import Settings
from wavegraph.streams.publish import wav_chunks
from wavegraph.streams.topics import delete_topics, ensure_topics

TENANT = "acme"
RATE = 16_000


@dataclass(frozen=True)
class Record:
    value: bytes
    headers: list[tuple[str, bytes]]
    key: bytes


def unique_settings(base: Settings, **asr: Any) -> Settings:
    """Own audio/transcripts/DLQ topics and consumer group; one Whisper thread (faster under load)."""
    uid = uuid.uuid4().hex[:10]
    topics = base.kafka.topics.model_copy(
        update={
            "audio": f"test.audio.{uid}",
            "transcripts": f"test.transcripts.{uid}",
            "dlq": f"test.dlq.{uid}",
        }
    )
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topics": topics}),
            "runtime": base.runtime.model_copy(update={"group_prefix": f"test-{uid}"}),
            "asr": base.asr.model_copy(update={"threads": 1, **asr}),
        }
    )


def new_group(settings: Settings) -> Settings:
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    return settings.model_copy(
        update={"runtime": settings.runtime.model_copy(update={"group_prefix": prefix})}
    )


def group_of(settings: Settings) -> str:
    return f"{settings.runtime.group_prefix}.audio"


def topics_of(settings: Settings) -> list[str]:
    t = settings.kafka.topics
    return [t.audio, t.transcripts, t.dlq]


async def create_topics(settings: Settings, partitions: int) -> None:
    await ensure_topics(settings.kafka, topics_of(settings), partitions=partitions)


async def drop_topics(settings: Settings) -> None:
    await delete_topics(settings.kafka, topics_of(settings))


# --- records ---------------------------------------------------------------------------------------


def headers(stream_id: str, seq: int | None, **extra: object) -> list[tuple[str, bytes]]:
    fields: dict[str, object] = {"tenant": TENANT, "stream_id": stream_id, "seq": seq}
    fields.update(extra)
    return [
        (k, str(v).lower().encode() if isinstance(v, bool) else str(v).encode())
        for k, v in fields.items()
        if v is not None
    ]


def record(value: bytes, stream_id: str, seq: int | None, **extra: object) -> Record:
    tenant = str(extra.get("tenant", TENANT))
    return Record(value, headers(stream_id, seq, **extra), f"{tenant}/{stream_id}".encode())


def pcm_records(path: Path, stream_id: str, chunk_s: float = 2.0) -> list[Record]:
    """A WAV file as raw-PCM chunks of ``chunk_s`` seconds and an end-of-stream marker."""
    return [
        Record(c.pcm, c.meta.to_headers(), f"{TENANT}/{stream_id}".encode())
        for c in wav_chunks(path, TENANT, stream_id, chunk_s)
    ]


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    """Mono 16-bit PCM WAV."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes())
    return buf.getvalue()


def float_wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    """Mono 32-bit IEEE-float WAV (WAVE_FORMAT_IEEE_FLOAT), which can carry NaN."""
    data = np.asarray(samples, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm_bytes(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes()


async def send(settings: Settings, records: Sequence[Record], *, partition: int | None = None) -> None:
    """Send ``records`` to the audio topic (to ``partition``, else by key), acknowledged by the broker."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        topic = settings.kafka.topics.audio
        futures = [
            await producer.send(topic, value=r.value, key=r.key, headers=r.headers, partition=partition)
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# --- reading back ----------------------------------------------------------------------------------


async def read_topic(settings: Settings, topic: str, partitions: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in ``topic``, partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        end = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: off for tp, off in end.items()}
    finally:
        await consumer.stop()


async def committed(settings: Settings) -> dict[int, int]:
    """The audio topic's committed offsets of the processor's consumer group, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_of(settings))
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == settings.kafka.topics.audio
    }


async def fetch(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        await register_vector(conn)
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def final_streams(settings: Settings, streams: Sequence[str]) -> set[str]:
    """Streams whose last window (end of stream) is stored."""
    rows = await fetch(
        settings,
        "SELECT metadata->>'stream_id' AS s FROM embeddings WHERE tenant = $1 AND kind = 'transcript' "
        "AND (metadata->'position'->>'final')::boolean AND metadata->>'stream_id' = ANY($2::text[])",
        TENANT,
        list(streams),
    )
    return {r["s"] for r in rows}


# --- running the processor ------------------------------------------------------------------------


class Processor:
    """``wavegraph run audio`` as a background task: ``async with Processor(...) as proc``.

    ``await proc.wait(done)`` polls ``done()`` until it is true (the processor must keep running
    meanwhile); leaving the block stops it and keeps its counters in ``proc.stats``.
    """

    def __init__(self, settings: Settings, *, embedder: Embedder, transcriber: Any = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.transcriber = transcriber
        self.stop = asyncio.Event()
        self.stats: dict[str, int] = {}
        self._task: asyncio.Task[dict[str, int]] | None = None

    async def __aenter__(self) -> Processor:
        self._task = asyncio.create_task(
            run_audio(self.settings, self.stop, embedder=self.embedder, transcriber=self.transcriber)
        )
        return self

    async def wait(self, done: Callable[[], Awaitable[bool]], timeout: float = 90.0) -> None:
        assert self._task is not None
        deadline = time.monotonic() + timeout
        while not await done():
            if self._task.done():
                self._task.result()
                raise AssertionError("the processor stopped on its own")
            assert time.monotonic() < deadline, "timed out waiting for the processor"
            await asyncio.sleep(0.25)

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the processor (it leaves its consumer group) and keep its counters; safe twice."""
        assert self._task is not None
        self.stop.set()
        self.stats = await self._task


async def run_until(
    settings: Settings,
    done: Callable[[], Awaitable[bool]],
    *,
    embedder: Embedder,
    timeout: float = 90.0,
    transcriber: Any = None,
) -> dict[str, int]:
    """Run ``wavegraph run audio`` until ``done()``; stop it and return its counters."""
    proc = Processor(settings, embedder=embedder, transcriber=transcriber)
    async with proc:
        await proc.wait(done, timeout)
    return proc.stats
